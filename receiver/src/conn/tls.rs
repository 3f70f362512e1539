//! The client side of TLS as libpq does it (`fe-secure-openssl.c`, `fe-secure-common.c`):
//! which certificates `sslmode`, `sslrootcert`, `sslcrl`, `sslcert` and `sslkey` (and their
//! `~/.postgresql` defaults) bring in, the handshake, the host name check of `verify-full`,
//! libpq's texts for each failure, and the socket before and after.

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use tokio_rustls::rustls::{self, CertificateError, DigitallySignedStruct, SignatureScheme};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::conninfo::{ConnInfo, SslMode};

/// A connection's socket: plain, or encrypted (with plaintext already taken from it).
#[derive(Debug)]
pub(super) enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP; `pending` holds plaintext read while waiting for readability.
    Tls {
        /// The stream.
        io: Box<TlsStream<TcpStream>>,
        /// Plaintext read ahead by [`Stream::readable`].
        pending: BytesMut,
    },
}

impl Stream {
    /// The encrypted stream and the hash of the server's certificate for
    /// `tls-server-end-point`; `None` for a plain connection.
    pub(super) fn server_end_point(&self) -> Option<Vec<u8>> {
        match self {
            Stream::Plain(_) => None,
            Stream::Tls { io, .. } => {
                let cert = io.get_ref().1.peer_certificates()?.first()?;
                walstream_protocol::wire::channel_binding::tls_server_end_point(cert.as_ref())
            }
        }
    }

    /// Whether TLS is in use.
    pub(super) fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls { .. })
    }

    /// Waits until a read may return data (or the end of the stream).
    pub(super) async fn readable(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.readable().await,
            Stream::Tls { io, pending } => {
                if pending.is_empty() {
                    pending.reserve(16 * 1024);
                    // A read of 0 (the end) leaves `pending` empty: the next read says so.
                    io.read_buf(pending).await?;
                }
                Ok(())
            }
        }
    }

    /// Reads what is there now into `buf` without waiting: `WouldBlock` when nothing is.
    pub(super) fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.try_read_buf(buf),
            Stream::Tls { .. } => {
                let mut tmp = vec![0u8; 16 * 1024];
                let n = self.try_read(&mut tmp)?;
                buf.extend_from_slice(&tmp[..n]);
                Ok(n)
            }
        }
    }

    /// Reads what is there now into `out` without waiting: `WouldBlock` when nothing is.
    pub(super) fn try_read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.try_read(out),
            Stream::Tls { io, pending } => {
                if !pending.is_empty() {
                    let n = out.len().min(pending.len());
                    out[..n].copy_from_slice(&pending[..n]);
                    pending.advance(n);
                    return Ok(n);
                }
                let mut cx = Context::from_waker(std::task::Waker::noop());
                let mut rb = ReadBuf::new(out);
                match Pin::new(&mut **io).poll_read(&mut cx, &mut rb) {
                    Poll::Ready(Ok(())) => Ok(rb.filled().len()),
                    Poll::Ready(Err(e)) => Err(e),
                    Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
                }
            }
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls { io, pending } => {
                if !pending.is_empty() {
                    let n = buf.remaining().min(pending.len());
                    buf.put_slice(&pending[..n]);
                    pending.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Pin::new(&mut **io).poll_read(cx, buf)
            }
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls { io, .. } => Pin::new(&mut **io).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls { io, .. } => Pin::new(&mut **io).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls { io, .. } => Pin::new(&mut **io).poll_shutdown(cx),
        }
    }
}

/// An SSL file's path: the keyword, else its environment variable, else
/// `~/.postgresql/<default_name>` (`fe-secure-openssl.c: initialize_SSL`).
fn ssl_file(info: &ConnInfo, keyword: &str, env: &str, default_name: &str) -> Option<PathBuf> {
    if let Some(v) = info.option(keyword).filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(v));
    }
    if let Some(v) = std::env::var_os(env).filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(v));
    }
    crate::conninfo::home_dir().map(|h| PathBuf::from(h).join(".postgresql").join(default_name))
}

/// libpq's texts for a root certificate file that is needed and missing.
fn no_root_file(path: &Path) -> String {
    format!(
        "root certificate file \"{}\" does not exist\n\
         Either provide the file or change sslmode to disable server certificate verification.",
        path.display()
    )
}

/// The rustls client configuration for `info` (`initialize_SSL`).
///
/// # Errors
/// libpq's text for a file that cannot be used.
pub(super) fn client_config(info: &ConnInfo) -> Result<rustls::ClientConfig, String> {
    // ring builds with a C compiler alone; its provider lacks only post-quantum key
    // exchange, which PostgreSQL 15's OpenSSL does not offer either.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let root = ssl_file(info, "sslrootcert", "PGSSLROOTCERT", "root.crt");
    let verify = match root.as_deref() {
        Some(p) if p.as_os_str() != "system" && p.exists() => {
            Some(verifier(p, info, provider.clone())?)
        }
        Some(p) if matches!(info.sslmode, SslMode::VerifyCa | SslMode::VerifyFull) => {
            return Err(no_root_file(p));
        }
        None if matches!(info.sslmode, SslMode::VerifyCa | SslMode::VerifyFull) => {
            return Err("could not get home directory to locate root certificate file\n\
                 Either provide the file or change sslmode to disable server certificate verification."
                .into());
        }
        _ => None,
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&protocol_versions(info))
        .map_err(|e| format!("SSL error: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PgVerifier { inner: verify, provider }));
    match client_cert(info)? {
        Some((certs, key)) => builder
            .with_client_auth_cert(certs, key)
            .map_err(|e| format!("certificate does not match private key file: {e}")),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// The versions `ssl_min_protocol_version` (default TLSv1.2, as libpq's) and
/// `ssl_max_protocol_version` allow, of the two rustls has.
fn protocol_versions(info: &ConnInfo) -> Vec<&'static rustls::SupportedProtocolVersion> {
    let rank = |key: &str| info.option(key).and_then(crate::conninfo::tls_version_rank);
    let min = rank("ssl_min_protocol_version").unwrap_or(12);
    let max = rank("ssl_max_protocol_version").unwrap_or(13);
    let mut out = Vec::new();
    if min <= 13 && max >= 13 {
        out.push(&rustls::version::TLS13);
    }
    if min <= 12 && max >= 12 {
        out.push(&rustls::version::TLS12);
    }
    out
}

/// The chain verifier for the root file at `root` and the CRL, when there is one.
fn verifier(
    root: &Path,
    info: &ConnInfo,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<rustls::client::WebPkiServerVerifier>, String> {
    let fail =
        |e: String| format!("could not read root certificate file \"{}\": {e}", root.display());
    let bytes = std::fs::read(root).map_err(|e| fail(os_text(&e)))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        roots.add(cert.map_err(|e| fail(e.to_string()))?).map_err(|e| fail(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(fail("no start line".into()));
    }
    let mut builder =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider);
    // A CRL file that does not exist is ignored, as libpq ignores it.
    if let Some(crl) = ssl_file(info, "sslcrl", "PGSSLCRL", "root.crl").filter(|p| p.exists()) {
        let bytes = std::fs::read(&crl).map_err(|e| {
            format!(
                "could not load SSL certificate revocation list (file \"{}\"): {}",
                crl.display(),
                os_text(&e)
            )
        })?;
        let crls = CertificateRevocationListDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                format!(
                    "could not load SSL certificate revocation list (file \"{}\"): {e}",
                    crl.display()
                )
            })?;
        builder = builder.with_crls(crls);
    }
    builder.build().map_err(|e| fail(e.to_string()))
}

type ClientCert = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// The client certificate and key, when the certificate file exists
/// (`initialize_SSL`: a missing `postgresql.crt` means no certificate).
fn client_cert(info: &ConnInfo) -> Result<Option<ClientCert>, String> {
    let Some(cert_path) = ssl_file(info, "sslcert", "PGSSLCERT", "postgresql.crt") else {
        return Ok(None);
    };
    let Ok(bytes) = std::fs::read(&cert_path) else { return Ok(None) };
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("could not read certificate file \"{}\": {e}", cert_path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "could not read certificate file \"{}\": no start line",
            cert_path.display()
        ));
    }
    let key_path = ssl_file(info, "sslkey", "PGSSLKEY", "postgresql.key").unwrap_or_default();
    let meta = std::fs::metadata(&key_path).map_err(|_| {
        format!("certificate present, but not private key file \"{}\"", key_path.display())
    })?;
    check_key_mode(&key_path, &meta)?;
    let key_bytes = std::fs::read(&key_path).map_err(|e| {
        format!("could not load private key file \"{}\": {}", key_path.display(), os_text(&e))
    })?;
    let key = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|_| {
        format!("could not load private key file \"{}\": unsupported", key_path.display())
    })?;
    Ok(Some((certs, key)))
}

/// `fe-secure-openssl.c`: a key others may read is refused.
fn check_key_mode(path: &Path, meta: &std::fs::Metadata) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    if !meta.is_file() {
        return Err(format!("private key file \"{}\" is not a regular file", path.display()));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    let loose = match meta.uid() {
        uid if uid == euid => meta.mode() & 0o077,
        0 => meta.mode() & 0o037,
        _ => 0,
    };
    if loose != 0 {
        return Err(format!(
            "private key file \"{}\" has group or world access; file must have permissions u=rw (0600) or less if owned by the current user, or permissions u=rw,g=r (0640) or less if owned by root",
            path.display()
        ));
    }
    Ok(())
}

fn os_text(e: &io::Error) -> String {
    let s = e.to_string();
    s.find(" (os error ").map_or(s.clone(), |i| s[..i].to_string())
}

/// Checks the chain when there is a root file, never the name (checked after the
/// handshake with libpq's texts); signatures are always checked.
#[derive(Debug)]
struct PgVerifier {
    inner: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PgVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(inner) = &self.inner else { return Ok(ServerCertVerified::assertion()) };
        match inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Encrypts `socket` as `info` asks, checking the host name for `verify-full`.
///
/// # Errors
/// libpq's text: `SSL error: certificate verify failed`, `server certificate for "x" does
/// not match host name "y"`, a file that cannot be used.
pub(super) async fn handshake(info: &ConnInfo, socket: TcpStream) -> Result<Stream, String> {
    let config = client_config(info)?;
    let host = info.host.as_str();
    // libpq sends SNI for host names, not for addresses (`sslsni`); rustls likewise.
    let name = ServerName::try_from(host.to_string())
        .map_err(|_| format!("invalid host name \"{host}\""))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let stream = connector.connect(name, socket).await.map_err(|e| handshake_error(&e))?;
    if info.sslmode == SslMode::VerifyFull {
        let cert = stream.get_ref().1.peer_certificates().and_then(|c| c.first()).cloned();
        let cert = cert.ok_or("server certificate missing")?;
        verify_peer_name(cert.as_ref(), host)?;
    }
    Ok(Stream::Tls { io: Box::new(stream), pending: BytesMut::new() })
}

/// `SSL error: ...` as libpq reports OpenSSL's error.
fn handshake_error(e: &io::Error) -> String {
    let why = match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(_)) => "certificate verify failed".to_string(),
        Some(rustls::Error::AlertReceived(alert)) => {
            format!("tlsv1 alert {}", alert_text(*alert))
        }
        Some(other) => other.to_string(),
        None if e.kind() == io::ErrorKind::UnexpectedEof => {
            return "SSL SYSCALL error: EOF detected".to_string()
        }
        None => e.to_string(),
    };
    format!("SSL error: {why}")
}

/// OpenSSL's words for an alert.
fn alert_text(alert: rustls::AlertDescription) -> String {
    use rustls::AlertDescription as A;
    match alert {
        A::UnknownCA => "unknown ca".into(),
        A::BadCertificate => "bad certificate".into(),
        A::CertificateRequired => "certificate required".into(),
        A::ProtocolVersion => "protocol version".into(),
        A::HandshakeFailure => "handshake failure".into(),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// `fe-secure-common.c: pq_verify_peer_name_matches_certificate`: the subject alternative
/// names (DNS names, and IP addresses for a host given as one), else the common name.
///
/// # Errors
/// libpq's texts.
pub fn verify_peer_name(cert_der: &[u8], host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("host name must be specified for a verified SSL connection".into());
    }
    let (_, cert) = X509Certificate::from_der(cert_der)
        .map_err(|_| "could not get server's host name from server certificate".to_string())?;
    let host_ip: Option<IpAddr> = host.parse().ok();
    let mut first: Option<String> = None;
    let mut examined = 0usize;
    let mut check_cn = true;
    let mut seen = |name: String| {
        examined += 1;
        first.get_or_insert(name);
    };
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for gn in &san.value.general_names {
            match gn {
                GeneralName::DNSName(dns) => {
                    check_cn = false;
                    if host_ip.is_none() && name_matches(dns, host) {
                        return Ok(());
                    }
                    seen(dns.to_string());
                }
                GeneralName::IPAddress(bytes) => {
                    let ip = ip_from(bytes);
                    if host_ip.is_some() {
                        check_cn = false;
                    }
                    if ip.is_some() && ip == host_ip {
                        return Ok(());
                    }
                    seen(ip.map_or_else(String::new, |ip| ip.to_string()));
                }
                _ => {}
            }
        }
    }
    if check_cn {
        if let Some(cn) = cert.subject().iter_common_name().next().and_then(|c| c.as_str().ok()) {
            if name_matches(cn, host) {
                return Ok(());
            }
            seen(cn.to_string());
        }
    }
    Err(match (examined, first) {
        (0, _) | (_, None) => "could not get server's host name from server certificate".into(),
        (1, Some(name)) => {
            format!("server certificate for \"{name}\" does not match host name \"{host}\"")
        }
        (n, Some(name)) => format!(
            "server certificate for \"{name}\" (and {} other name{}) does not match host name \"{host}\"",
            n - 1,
            if n == 2 { "" } else { "s" }
        ),
    })
}

fn ip_from(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// `fe-secure-common.c: wildcard_certificate_match` and the exact, case-insensitive match.
fn name_matches(pattern: &str, host: &str) -> bool {
    if pattern.eq_ignore_ascii_case(host) {
        return true;
    }
    let Some(suffix) = pattern.strip_prefix('*') else { return false };
    if !suffix.starts_with('.') || host.len() < pattern.len() {
        return false;
    }
    let split = host.len() - suffix.len();
    let (left, right) = host.split_at(split);
    right.eq_ignore_ascii_case(suffix) && !left.contains('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_one_leftmost_label() {
        assert!(name_matches("*.example.com", "db.example.com"));
        assert!(name_matches("*.Example.com", "DB.example.COM"));
        assert!(!name_matches("*.example.com", "a.b.example.com"));
        assert!(!name_matches("*.example.com", "example.com"));
        assert!(name_matches("localhost", "LOCALHOST"));
        assert!(!name_matches("local*", "localhost"));
    }

    #[test]
    fn name_mismatch_reads_as_libpq_says_it() {
        let key = rcgen::KeyPair::generate().unwrap();
        let two = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        // psql host=wronghost hostaddr=127.0.0.1 sslmode=verify-full against the same SANs.
        assert_eq!(
            verify_peer_name(two.der(), "wronghost").unwrap_err(),
            "server certificate for \"localhost\" (and 1 other name) does not match host name \"wronghost\""
        );
        assert!(verify_peer_name(two.der(), "localhost").is_ok());
        assert!(verify_peer_name(two.der(), "127.0.0.1").is_ok());
        let one = rcgen::CertificateParams::new(vec!["db.example".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        assert_eq!(
            verify_peer_name(one.der(), "other").unwrap_err(),
            "server certificate for \"db.example\" does not match host name \"other\""
        );
        let hash = walstream_protocol::wire::channel_binding::tls_server_end_point(one.der());
        assert_eq!(hash.map(|h| h.len()), Some(32));
    }
}
