//! TLS on the server side (`libpq/be-secure-openssl.c`): the settings made into a rustls
//! configuration at start, the socket before and after the handshake, and what
//! `pg_stat_ssl` shows of an encrypted connection.
//!
//! The files are read as `be_tls_init` reads them, with its texts for each failure
//! (`could not load server certificate file "server.crt": No such file or directory`), and
//! relative names are taken from the server's directory, as PostgreSQL takes them from its
//! data directory. With `ssl_ca_file` set, clients are asked for a certificate, which
//! must chain to it when sent; none is required (`SSL_VERIFY_PEER`, as PostgreSQL asks).

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::rustls::{self, pki_types};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::{SslSettings, TlsVersion};
use crate::conn::{PqReader, PqWriter};
use crate::tls_info::SslStatus;

/// Why TLS could not be set up at start; the text is PostgreSQL's FATAL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TlsError {
    /// The message.
    pub message: String,
    /// PostgreSQL's DETAIL, where it gives one.
    pub detail: Option<&'static str>,
}

impl TlsError {
    fn new(message: String) -> TlsError {
        TlsError { message, detail: None }
    }
}

/// The server's TLS state: how to accept, and the hash of its certificate that
/// `tls-server-end-point` channel binding uses.
pub struct ServerTls {
    acceptor: TlsAcceptor,
    /// `be_tls_get_certificate_hash`: the server certificate hashed with its signature's
    /// hash (SHA-256 for MD5 and SHA-1).
    pub cert_hash: Option<Vec<u8>>,
    /// `ssl_ca_file` was loaded: client certificates can be checked
    /// (`secure_loaded_verify_locations`).
    pub has_ca: bool,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").finish_non_exhaustive()
    }
}

/// `name` as the server reads it: relative names are under `dir`.
fn resolve(dir: &Path, name: &str) -> PathBuf {
    let p = Path::new(name);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    }
}

/// The OS error text without Rust's `(os error N)` suffix, as `%m` prints it.
fn os_text(e: &io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

impl ServerTls {
    /// The TLS configuration `settings` describe, files relative to `dir`; `None` when
    /// `ssl` is off (`be_tls_init`).
    ///
    /// # Errors
    /// A certificate, key or CA file that cannot be read or used, with PostgreSQL's text.
    pub fn load(settings: &SslSettings, dir: &Path) -> Result<Option<Arc<ServerTls>>, TlsError> {
        if !settings.enabled {
            return Ok(None);
        }
        // ring builds with a C compiler alone; its provider lacks only post-quantum key
        // exchange, which libpq does not offer either.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs = load_certs(&resolve(dir, &settings.cert_file), &settings.cert_file)?;
        let key = load_key(&resolve(dir, &settings.key_file), &settings.key_file)?;
        let versions: &[&rustls::SupportedProtocolVersion] =
            if settings.min_protocol_version >= TlsVersion::V1_3 {
                &[&rustls::version::TLS13]
            } else {
                &[&rustls::version::TLS13, &rustls::version::TLS12]
            };
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| TlsError::new(format!("could not set up TLS: {e}")))?;
        let builder = if settings.ca_file.is_empty() {
            builder.with_no_client_auth()
        } else {
            let roots = load_roots(&resolve(dir, &settings.ca_file), &settings.ca_file)?;
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider)
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| {
                        TlsError::new(format!(
                            "could not load root certificate file \"{}\": {e}",
                            settings.ca_file
                        ))
                    })?;
            builder.with_client_cert_verifier(verifier)
        };
        let cert_hash = certs
            .first()
            .and_then(|c| walstream_protocol::wire::channel_binding::tls_server_end_point(c));
        let config = builder.with_single_cert(certs, key).map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => {
                TlsError::new("check of private key failed: key values mismatch".to_string())
            }
            e => TlsError::new(format!(
                "could not load private key file \"{}\": {e}",
                settings.key_file
            )),
        })?;
        let has_ca = !settings.ca_file.is_empty();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        Ok(Some(Arc::new(ServerTls { acceptor, cert_hash, has_ca })))
    }

    /// The handshake on a socket whose SSLRequest was answered `S`.
    ///
    /// # Errors
    /// The handshake failed (PostgreSQL logs it and closes).
    pub async fn accept(&self, socket: TcpStream) -> io::Result<TlsStream<TcpStream>> {
        self.acceptor.accept(socket).await
    }
}

fn load_certs(
    path: &Path,
    name: &str,
) -> Result<Vec<pki_types::CertificateDer<'static>>, TlsError> {
    use pki_types::pem::PemObject;
    let fail = |why: String| {
        TlsError::new(format!("could not load server certificate file \"{name}\": {why}"))
    };
    let bytes = std::fs::read(path).map_err(|e| fail(os_text(&e)))?;
    let certs = pki_types::CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(e.to_string()))?;
    if certs.is_empty() {
        // OpenSSL's PEM_R_NO_START_LINE.
        return Err(fail("no start line".to_string()));
    }
    Ok(certs)
}

/// `be-secure-common.c: check_ssl_key_file`, then the key itself.
fn load_key(path: &Path, name: &str) -> Result<pki_types::PrivateKeyDer<'static>, TlsError> {
    use pki_types::pem::PemObject;
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(|e| {
        TlsError::new(format!("could not access private key file \"{name}\": {}", os_text(&e)))
    })?;
    if !meta.is_file() {
        return Err(TlsError::new(format!("private key file \"{name}\" is not a regular file")));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if meta.uid() != euid && meta.uid() != 0 {
        return Err(TlsError::new(format!(
            "private key file \"{name}\" must be owned by the database user or root"
        )));
    }
    let mode = meta.mode();
    let loose = if meta.uid() == euid { mode & 0o077 != 0 } else { mode & 0o037 != 0 };
    if loose {
        return Err(TlsError {
            message: format!("private key file \"{name}\" has group or world access"),
            detail: Some("File must have permissions u=rw (0600) or less if owned by the database user, or permissions u=rw,g=r (0640) or less if owned by root."),
        });
    }
    let bytes = std::fs::read(path).map_err(|e| {
        TlsError::new(format!("could not load private key file \"{name}\": {}", os_text(&e)))
    })?;
    pki_types::PrivateKeyDer::from_pem_slice(&bytes).map_err(|_| {
        // What OpenSSL 3's decoder says of a file with no key in it.
        TlsError::new(format!("could not load private key file \"{name}\": unsupported"))
    })
}

fn load_roots(path: &Path, name: &str) -> Result<Arc<rustls::RootCertStore>, TlsError> {
    use pki_types::pem::PemObject;
    let fail = |why: String| {
        TlsError::new(format!("could not load root certificate file \"{name}\": {why}"))
    };
    let bytes = std::fs::read(path).map_err(|e| fail(os_text(&e)))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in pki_types::CertificateDer::pem_slice_iter(&bytes) {
        let cert = cert.map_err(|e| fail(e.to_string()))?;
        roots.add(cert).map_err(|e| fail(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(fail("no start line".to_string()));
    }
    Ok(Arc::new(roots))
}

/// The TLS handshake after an `S` (`be-secure-openssl.c: be_tls_open_server`): the halves
/// are taken from the reader and writer, joined, encrypted, and put back. `None` when it
/// failed (PostgreSQL logs it and closes without a word).
pub async fn start_tls(
    tls: &ServerTls,
    reader: &mut PqReader<ReadHalf>,
    writer: &mut PqWriter<WriteHalf>,
) -> Option<SslStatus> {
    let r = std::mem::replace(reader.get_mut(), ReadHalf::Detached);
    let w = std::mem::replace(writer.get_mut(), WriteHalf::Detached);
    let socket = reunite(r, w)?;
    let stream = match tls.accept(socket).await {
        Ok(stream) => stream,
        Err(e) => {
            tracing::info!("could not accept SSL connection: {e}");
            return None;
        }
    };
    let status = SslStatus::of(stream.get_ref().1);
    let (r, w) = split_tls(stream);
    *reader.get_mut() = r;
    *writer.get_mut() = w;
    Some(status)
}

/// The reading half of a client connection, plain or encrypted.
#[derive(Debug)]
pub enum ReadHalf {
    /// Plain TCP.
    Plain(OwnedReadHalf),
    /// After the TLS handshake.
    Tls(tokio::io::ReadHalf<TlsStream<TcpStream>>),
    /// Taken away for the handshake.
    Detached,
}

/// The writing half of a client connection, plain or encrypted.
#[derive(Debug)]
pub enum WriteHalf {
    /// Plain TCP.
    Plain(OwnedWriteHalf),
    /// After the TLS handshake.
    Tls(tokio::io::WriteHalf<TlsStream<TcpStream>>),
    /// Taken away for the handshake.
    Detached,
}

impl WriteHalf {
    /// The socket, while the connection is plain TCP (what `sendfile` can write to).
    pub fn plain_socket(&self) -> Option<&TcpStream> {
        match self {
            WriteHalf::Plain(w) => Some(w.as_ref()),
            WriteHalf::Tls(_) | WriteHalf::Detached => None,
        }
    }
}

/// Both halves of a plain socket.
pub fn split_plain(socket: TcpStream) -> (ReadHalf, WriteHalf) {
    let (r, w) = socket.into_split();
    (ReadHalf::Plain(r), WriteHalf::Plain(w))
}

/// Both halves of an encrypted socket.
pub fn split_tls(stream: TlsStream<TcpStream>) -> (ReadHalf, WriteHalf) {
    let (r, w) = tokio::io::split(stream);
    (ReadHalf::Tls(r), WriteHalf::Tls(w))
}

/// The plain socket back from its halves; `None` when they are not plain halves of
/// one socket.
pub fn reunite(r: ReadHalf, w: WriteHalf) -> Option<TcpStream> {
    match (r, w) {
        (ReadHalf::Plain(r), WriteHalf::Plain(w)) => r.reunite(w).ok(),
        _ => None,
    }
}

fn detached() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "connection detached for the TLS handshake")
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ReadHalf::Plain(r) => Pin::new(r).poll_read(cx, buf),
            ReadHalf::Tls(r) => Pin::new(r).poll_read(cx, buf),
            ReadHalf::Detached => Poll::Ready(Err(detached())),
        }
    }
}

impl AsyncWrite for WriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteHalf::Plain(w) => Pin::new(w).poll_write(cx, buf),
            WriteHalf::Tls(w) => Pin::new(w).poll_write(cx, buf),
            WriteHalf::Detached => Poll::Ready(Err(detached())),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteHalf::Plain(w) => Pin::new(w).poll_write_vectored(cx, bufs),
            WriteHalf::Tls(w) => Pin::new(w).poll_write_vectored(cx, bufs),
            WriteHalf::Detached => Poll::Ready(Err(detached())),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            WriteHalf::Plain(w) => w.is_write_vectored(),
            WriteHalf::Tls(w) => w.is_write_vectored(),
            WriteHalf::Detached => false,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Plain(w) => Pin::new(w).poll_flush(cx),
            WriteHalf::Tls(w) => Pin::new(w).poll_flush(cx),
            WriteHalf::Detached => Poll::Ready(Err(detached())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Plain(w) => Pin::new(w).poll_shutdown(cx),
            WriteHalf::Tls(w) => Pin::new(w).poll_shutdown(cx),
            WriteHalf::Detached => Poll::Ready(Err(detached())),
        }
    }
}

#[cfg(test)]
mod tests;
