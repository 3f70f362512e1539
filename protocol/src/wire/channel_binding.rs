//! `tls-server-end-point` channel binding data (RFC 5929) for SCRAM-SHA-256-PLUS: the
//! server certificate hashed with the hash of its signature algorithm, SHA-256 in place of
//! MD5 and SHA-1 (`be_tls_get_certificate_hash`, `pgtls_get_peer_certificate_hash`).
//!
//! Only the certificate's outer structure is read (a DER walk to `signatureAlgorithm`),
//! so both ends compute it the same way without an X.509 library.

use sha2::Digest;

/// The binding data for a DER certificate; `None` when it is not a certificate or its
/// signature algorithm has no hash PostgreSQL binds with (Ed25519).
pub fn tls_server_end_point(cert_der: &[u8]) -> Option<Vec<u8>> {
    let oid = signature_algorithm(cert_der)?;
    let hash = match oid {
        // md5WithRSAEncryption, sha1WithRSAEncryption, sha256WithRSAEncryption, RSASSA-PSS
        // (SHA-256, its usual parameter)
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x04 | 0x05 | 0x0b | 0x0a] => {
            sha2::Sha256::digest(cert_der).to_vec()
        }
        // sha384WithRSAEncryption
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c] => {
            sha2::Sha384::digest(cert_der).to_vec()
        }
        // sha512WithRSAEncryption
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d] => {
            sha2::Sha512::digest(cert_der).to_vec()
        }
        // ecdsa-with-SHA1, ecdsa-with-SHA256
        [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01]
        | [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02] => {
            sha2::Sha256::digest(cert_der).to_vec()
        }
        // ecdsa-with-SHA384
        [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03] => sha2::Sha384::digest(cert_der).to_vec(),
        // ecdsa-with-SHA512
        [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04] => sha2::Sha512::digest(cert_der).to_vec(),
        _ => return None,
    };
    Some(hash)
}

/// The content bytes of the OID in `Certificate.signatureAlgorithm`
/// (`SEQUENCE { tbsCertificate SEQUENCE, signatureAlgorithm SEQUENCE { OID, ... }, ... }`).
fn signature_algorithm(der: &[u8]) -> Option<&[u8]> {
    let (tag, cert, _) = tlv(der)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, _, rest) = tlv(cert)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, alg, _) = tlv(rest)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, oid, _) = tlv(alg)?;
    (tag == 0x06).then_some(oid)
}

/// One DER tag-length-value: (tag, value, what follows).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (bytes, rest) = rest.split_at(n);
        (bytes.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b)), rest)
    };
    if rest.len() < len {
        return None;
    }
    let (value, rest) = rest.split_at(len);
    Some((tag, value, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn short_and_odd_input_is_not_a_certificate() {
        assert_eq!(tls_server_end_point(&[]), None);
        assert_eq!(tls_server_end_point(&[0x30, 0x82, 0xff]), None);
        assert_eq!(tls_server_end_point(&[0x30, 0x00]), None);
        // SEQUENCE { SEQUENCE {}, SEQUENCE { OID ecdsa-with-SHA256 } }
        let cert = [
            0x30, 0x0e, 0x30, 0x00, 0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04,
            0x03, 0x02,
        ];
        assert_eq!(tls_server_end_point(&cert).map(|h| h.len()), Some(32));
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = tls_server_end_point(&bytes);
        }
    }
}
