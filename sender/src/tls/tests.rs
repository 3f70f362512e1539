//! Loading the server's TLS files, with PostgreSQL 15's texts for each failure (checked
//! against `postgres -c ssl=on` with the same files).

use std::os::unix::fs::PermissionsExt;

use super::*;

fn settings() -> SslSettings {
    SslSettings { enabled: true, ..SslSettings::default() }
}

/// A self-signed certificate and key, written as server.crt / server.key (key 0600).
fn write_pair(dir: &Path) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert =
        rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap().self_signed(&key).unwrap();
    std::fs::write(dir.join("server.crt"), cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
    std::fs::set_permissions(dir.join("server.key"), std::fs::Permissions::from_mode(0o600))
        .unwrap();
}

fn load_err(dir: &Path) -> TlsError {
    ServerTls::load(&settings(), dir).unwrap_err()
}

#[test]
fn ssl_off_loads_nothing() {
    let dir = tempfile::tempdir().unwrap();
    assert!(ServerTls::load(&SslSettings::default(), dir.path()).unwrap().is_none());
}

#[test]
fn a_good_pair_loads_with_its_end_point_hash() {
    let dir = tempfile::tempdir().unwrap();
    write_pair(dir.path());
    let tls = ServerTls::load(&settings(), dir.path()).unwrap().unwrap();
    // rcgen signs with ECDSA P-256 SHA-256: a SHA-256 hash.
    assert_eq!(tls.cert_hash.as_ref().map(Vec::len), Some(32));
}

#[test]
fn start_errors_read_as_postgresql_15_says_them() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        load_err(dir.path()).message,
        "could not load server certificate file \"server.crt\": No such file or directory"
    );
    std::fs::write(dir.path().join("server.crt"), "").unwrap();
    assert_eq!(
        load_err(dir.path()).message,
        "could not load server certificate file \"server.crt\": no start line"
    );
    write_pair(dir.path());
    std::fs::remove_file(dir.path().join("server.key")).unwrap();
    assert_eq!(
        load_err(dir.path()).message,
        "could not access private key file \"server.key\": No such file or directory"
    );
    write_pair(dir.path());
    let key = dir.path().join("server.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = load_err(dir.path());
    assert_eq!(e.message, "private key file \"server.key\" has group or world access");
    assert!(e.detail.unwrap().starts_with("File must have permissions u=rw (0600) or less"));
    std::fs::write(&key, "garbage\n").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(
        load_err(dir.path()).message,
        "could not load private key file \"server.key\": unsupported"
    );
    // A key that is not the certificate's.
    write_pair(dir.path());
    let other = rcgen::KeyPair::generate().unwrap();
    std::fs::write(&key, other.serialize_pem()).unwrap();
    assert_eq!(load_err(dir.path()).message, "check of private key failed: key values mismatch");
}

#[test]
fn relative_names_are_under_the_directory_and_absolute_ones_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    write_pair(elsewhere.path());
    let mut s = settings();
    s.cert_file = elsewhere.path().join("server.crt").display().to_string();
    s.key_file = elsewhere.path().join("server.key").display().to_string();
    assert!(ServerTls::load(&s, dir.path()).unwrap().is_some());
    s.ca_file = "root.crt".into();
    assert_eq!(
        ServerTls::load(&s, dir.path()).unwrap_err().message,
        "could not load root certificate file \"root.crt\": No such file or directory"
    );
}
