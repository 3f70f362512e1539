//! Password verifiers as `pg_authid.rolpassword` stores them (`libpq/crypt.c`,
//! `libpq/auth-scram.c: parse_scram_secret`), and checks of a cleartext password against them.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// SCRAM key length (SHA-256 output).
pub const SCRAM_KEY_LEN: usize = 32;

/// The iteration count PostgreSQL uses (`SCRAM_DEFAULT_ITERATIONS`).
pub const SCRAM_DEFAULT_ITERATIONS: u32 = 4096;

/// A SCRAM-SHA-256 secret: `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    /// The PBKDF2 iteration count (at least 1).
    pub iterations: u32,
    /// The salt, decoded.
    pub salt: Vec<u8>,
    /// `H(ClientKey)`.
    pub stored_key: [u8; SCRAM_KEY_LEN],
    /// `HMAC(SaltedPassword, "Server Key")`.
    pub server_key: [u8; SCRAM_KEY_LEN],
}

impl fmt::Debug for ScramVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramVerifier")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for ScramVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            STANDARD.encode(&self.salt),
            STANDARD.encode(self.stored_key),
            STANDARD.encode(self.server_key)
        )
    }
}

impl ScramVerifier {
    /// Parses a SCRAM secret (`auth-scram.c: parse_scram_secret`). Unlike PostgreSQL,
    /// an iteration count below 1 is refused.
    pub fn parse(secret: &str) -> Option<ScramVerifier> {
        let rest = secret.strip_prefix("SCRAM-SHA-256$")?;
        let (iterations, rest) = rest.split_once(':')?;
        let (salt, rest) = rest.split_once('$')?;
        let (stored_key, server_key) = rest.split_once(':')?;
        let iterations: u32 = iterations.parse().ok().filter(|&i| i > 0)?;
        Some(ScramVerifier {
            iterations,
            salt: STANDARD.decode(salt).ok()?,
            stored_key: decode_key(stored_key)?,
            server_key: decode_key(server_key)?,
        })
    }

    /// The verifier PostgreSQL would store for `password` with this salt and count
    /// (`scram-common.c: scram_build_secret`); the password is SASLprep-normalized first.
    pub fn from_password(password: &[u8], salt: &[u8], iterations: u32) -> ScramVerifier {
        let salted = salted_password(password, salt, iterations);
        let client_key = hmac_sha256(&salted, &[b"Client Key"]);
        ScramVerifier {
            iterations,
            salt: salt.to_vec(),
            stored_key: Sha256::digest(client_key).into(),
            server_key: hmac_sha256(&salted, &[b"Server Key"]),
        }
    }

    /// Whether `password` is the one this verifier was made from, comparing ServerKey as
    /// `auth-scram.c: scram_verify_plain_password` does.
    pub fn verify_plain(&self, password: &[u8]) -> bool {
        let salted = salted_password(password, &self.salt, self.iterations);
        let server_key = hmac_sha256(&salted, &[b"Server Key"]);
        bool::from(server_key.ct_eq(&self.server_key))
    }
}

fn decode_key(text: &str) -> Option<[u8; SCRAM_KEY_LEN]> {
    STANDARD.decode(text).ok()?.try_into().ok()
}

/// `Hi(Normalize(password), salt, i)`: PBKDF2-HMAC-SHA-256. SASLprep is applied when it
/// succeeds; otherwise the raw bytes are used, as PostgreSQL does (`pg_saslprep`).
pub(crate) fn salted_password(
    password: &[u8],
    salt: &[u8],
    iterations: u32,
) -> [u8; SCRAM_KEY_LEN] {
    let prepared = std::str::from_utf8(password).ok().and_then(|p| stringprep::saslprep(p).ok());
    let bytes = prepared.as_deref().map_or(password, str::as_bytes);
    pbkdf2::pbkdf2_hmac_array::<Sha256, SCRAM_KEY_LEN>(bytes, salt, iterations)
}

/// HMAC-SHA-256 of the concatenated `parts`.
pub(crate) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; SCRAM_KEY_LEN] {
    // HMAC takes keys of any length; new_from_slice cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return [0; SCRAM_KEY_LEN],
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Lower-case hex of an MD5 digest over the concatenated `parts` (`md5_common.c: pg_md5_hash`).
pub(crate) fn md5_hex(parts: &[&[u8]]) -> String {
    let mut md5 = Md5::new();
    for part in parts {
        md5.update(part);
    }
    md5.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A stored password verifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verifier {
    /// `SCRAM-SHA-256$...`.
    Scram(ScramVerifier),
    /// `md5` followed by 32 lower-case hex digits: `md5hex(password + rolename)`.
    Md5(String),
}

impl Verifier {
    /// Parses a stored verifier (`crypt.c: get_password_type`); `None` for anything else,
    /// including plaintext.
    pub fn parse(text: &str) -> Option<Verifier> {
        if let Some(hex) = text.strip_prefix("md5") {
            if hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                return Some(Verifier::Md5(text.to_owned()));
            }
        }
        ScramVerifier::parse(text).map(Verifier::Scram)
    }

    /// The md5 verifier PostgreSQL stores for `password` and `role` (`crypt.c: encrypt_password`).
    pub fn md5_from_password(password: &[u8], role: &str) -> Verifier {
        Verifier::Md5(format!("md5{}", md5_hex(&[password, role.as_bytes()])))
    }

    /// Checks a cleartext password (`crypt.c: plain_crypt_verify`).
    pub fn verify_plain(&self, role: &str, password: &[u8]) -> bool {
        match self {
            Verifier::Scram(scram) => scram.verify_plain(password),
            Verifier::Md5(stored) => {
                let computed = format!("md5{}", md5_hex(&[password, role.as_bytes()]));
                bool::from(computed.as_bytes().ct_eq(stored.as_bytes()))
            }
        }
    }
}

impl fmt::Display for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verifier::Scram(scram) => scram.fmt(f),
            Verifier::Md5(text) => f.write_str(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Verifiers copied from pg_authid.rolpassword of a PostgreSQL 15.18 cluster:
    // CREATE ROLE replicator PASSWORD 'secret' (scram-sha-256),
    // CREATE ROLE alice PASSWORD 'wonderland' (md5), CREATE ROLE "bob:x" PASSWORD 'pässwörd'.
    pub(crate) const REPLICATOR_SCRAM: &str = "SCRAM-SHA-256$4096:Mz5vk4psTFnbRwMGwKEhGA==$N8gQUHLa6JKhfqp1JXCkLFOBlGgwbu/33yxoFC2NMyE=:Xqm6k7l3VM9F99fE+8jhXND21R2BM26rvF9QuoBudRs=";
    pub(crate) const ALICE_MD5: &str = "md56b765adf84f3c4341e8aab77ceda3bf1";
    pub(crate) const BOB_SCRAM: &str = "SCRAM-SHA-256$4096:GM/H5cboHXmeLcPp/zmkrA==$dtY83+Mf4RDr1iaYYdL5Uj6V37XCPippXSMWH6D9F9A=:rn3AXg2CLvwHglF/W0DPfT1j/siFmg3MYqr6l+pnyxI=";

    #[test]
    fn real_verifiers_parse_print_and_verify() {
        let scram = Verifier::parse(REPLICATOR_SCRAM).unwrap();
        assert_eq!(scram.to_string(), REPLICATOR_SCRAM);
        assert!(scram.verify_plain("replicator", b"secret"));
        assert!(!scram.verify_plain("replicator", b"Secret"));
        let Verifier::Scram(s) = &scram else { panic!("not scram") };
        assert_eq!(&ScramVerifier::from_password(b"secret", &s.salt, 4096), s);
        let md5 = Verifier::parse(ALICE_MD5).unwrap();
        assert_eq!(md5, Verifier::md5_from_password(b"wonderland", "alice"));
        assert!(md5.verify_plain("alice", b"wonderland"));
        assert!(!md5.verify_plain("alicia", b"wonderland"));
        let bob = Verifier::parse(BOB_SCRAM).unwrap();
        assert!(bob.verify_plain("bob:x", "pässwörd".as_bytes()));
    }

    #[test]
    fn saslprep_applies() {
        // U+00A0 (no-break space) maps to a space under SASLprep.
        let v = ScramVerifier::from_password(b"a b", b"salt", 1);
        assert!(v.verify_plain("a\u{a0}b".as_bytes()));
        // Not UTF-8: used as is.
        let raw = ScramVerifier::from_password(b"\xff", b"salt", 1);
        assert!(raw.verify_plain(b"\xff"));
    }

    #[test]
    fn malformed_verifiers() {
        for bad in [
            "secret",
            "md5",
            "md56B765ADF84F3C4341E8AAB77CEDA3BF1",
            "md56b765adf84f3c4341e8aab77ceda3bf",
            "SCRAM-SHA-256$0:Mz5vk4psTFnbRwMGwKEhGA==$N8gQUHLa6JKhfqp1JXCkLFOBlGgwbu/33yxoFC2NMyE=:Xqm6k7l3VM9F99fE+8jhXND21R2BM26rvF9QuoBudRs=",
            "SCRAM-SHA-256$4096:Mz5v!$N8gQUHLa6JKhfqp1JXCkLFOBlGgwbu/33yxoFC2NMyE=:Xqm6k7l3VM9F99fE+8jhXND21R2BM26rvF9QuoBudRs=",
            "SCRAM-SHA-256$4096:Mz5vk4psTFnbRwMGwKEhGA==$N8gQ:Xqm6k7l3VM9F99fE+8jhXND21R2BM26rvF9QuoBudRs=",
            "SCRAM-SHA-256$4096:Mz5vk4psTFnbRwMGwKEhGA==",
            "SCRAM-SHA-1$4096:Mz5vk4psTFnbRwMGwKEhGA==$N8gQUHLa6JKhfqp1JXCkLFOBlGgwbu/33yxoFC2NMyE=:Xqm6k7l3VM9F99fE+8jhXND21R2BM26rvF9QuoBudRs=",
        ] {
            assert_eq!(Verifier::parse(bad), None, "{bad}");
        }
    }
}
