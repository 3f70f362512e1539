//! Test certificates made with rcgen: a root CA, server certificates for `localhost` and
//! 127.0.0.1 signed by it (good, expired, or from another CA), and client certificates,
//! written as PEM files into a postgres-owned directory (keys 0600, owned by postgres, as
//! PostgreSQL and libpq require).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Result;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};

use crate::{chown_postgres, postgres_owned_tempdir};

/// A certificate authority whose root signs the certificates it issues.
pub struct TestCa {
    key: KeyPair,
    cert: rcgen::Certificate,
}

impl TestCa {
    /// A new self-signed root named `cn`.
    ///
    /// # Errors
    /// If rcgen fails.
    pub fn new(cn: &str) -> Result<TestCa> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, cn);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key)?;
        Ok(TestCa { key, cert })
    }

    /// The root certificate in PEM.
    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A certificate for `cn` with `sans` (host names or IP addresses), signed by this
    /// CA; `expired` makes one whose validity ended in 2021. Returns (certificate, key) PEM.
    ///
    /// # Errors
    /// If rcgen fails.
    pub fn issue(&self, cn: &str, sans: &[&str], expired: bool) -> Result<(String, String)> {
        let key = KeyPair::generate()?;
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans)?;
        params.distinguished_name.push(DnType::CommonName, cn);
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// A directory of PEM files, owned by postgres.
pub struct CertDir {
    dir: tempfile::TempDir,
}

impl CertDir {
    /// A new empty directory.
    ///
    /// # Errors
    /// If it cannot be made.
    pub fn new() -> Result<CertDir> {
        Ok(CertDir { dir: postgres_owned_tempdir("walstream-certs.")? })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `text` as `name` (mode 0600 when `private`), owned by postgres; returns
    /// its path.
    ///
    /// # Errors
    /// If it cannot be written.
    pub fn write(&self, name: &str, text: &str, private: bool) -> Result<PathBuf> {
        let path = self.dir.path().join(name);
        write_pem(&path, text, private)?;
        chown_postgres(&path)?;
        Ok(path)
    }
}

/// Writes a PEM file (mode 0600 when `private`, else 0644).
///
/// # Errors
/// If it cannot be written.
pub fn write_pem(path: &Path, text: &str, private: bool) -> Result<()> {
    std::fs::write(path, text)?;
    let mode = if private { 0o600 } else { 0o644 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// A CA and a server certificate for `localhost` and 127.0.0.1 in a [`CertDir`]:
/// `root.crt`, `server.crt`, `server.key`.
pub struct ServerPki {
    /// The CA.
    pub ca: TestCa,
    /// The files.
    pub dir: CertDir,
    /// The server certificate's PEM.
    pub server_crt: String,
    /// The server key's PEM.
    pub server_key: String,
}

impl ServerPki {
    /// Makes the CA and the server certificate and writes them.
    ///
    /// # Errors
    /// If rcgen fails or a file cannot be written.
    pub fn new() -> Result<ServerPki> {
        let ca = TestCa::new("walstream test root")?;
        let (server_crt, server_key) = ca.issue("localhost", &["localhost", "127.0.0.1"], false)?;
        let dir = CertDir::new()?;
        dir.write("root.crt", &ca.pem(), false)?;
        dir.write("server.crt", &server_crt, false)?;
        dir.write("server.key", &server_key, true)?;
        Ok(ServerPki { ca, dir, server_crt, server_key })
    }

    /// The root certificate's path.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root.crt")
    }

    /// Puts `server.crt` and `server.key` into `dir` (the key 0600, owned by whoever runs
    /// the server: `postgres` when `for_postgres`, else the current user).
    ///
    /// # Errors
    /// If they cannot be written.
    pub fn install(&self, dir: &Path, for_postgres: bool) -> Result<()> {
        write_pem(&dir.join("server.crt"), &self.server_crt, false)?;
        write_pem(&dir.join("server.key"), &self.server_key, true)?;
        if for_postgres {
            chown_postgres(&dir.join("server.crt"))?;
            chown_postgres(&dir.join("server.key"))?;
        }
        Ok(())
    }
}
