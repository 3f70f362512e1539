//! `--listen ADDR:PORT`: every client connection is forwarded, byte for byte, to the node
//! that is the primary when it connects, so applications keep one address across a
//! failover. A session whose server side breaks while the client still talks is reported
//! to the manager (`failover_on_backend_error`).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::manager::{Event, Target};

/// How long a new client waits for a primary (during a failover) before it is closed.
const WAIT_FOR_PRIMARY: Duration = Duration::from_secs(30);

/// Binds `addr` and forwards clients until `cancel`; returns the bound address.
///
/// # Errors
/// The address cannot be bound.
pub async fn start(
    addr: SocketAddr,
    targets: watch::Receiver<Option<Target>>,
    events: mpsc::Sender<Event>,
    cancel: CancellationToken,
) -> Result<SocketAddr> {
    let listener =
        TcpListener::bind(addr).await.with_context(|| format!("could not listen on {addr}"))?;
    let bound = listener.local_addr()?;
    tracing::info!("forwarding client connections on {bound} to the primary");
    tokio::spawn(async move {
        loop {
            let client = tokio::select! {
                _ = cancel.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok((s, _)) => s,
                    Err(e) => {
                        tracing::warn!("could not accept new connection: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let (targets, events, cancel) = (targets.clone(), events.clone(), cancel.clone());
            tokio::spawn(async move {
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    _ = forward(client, targets, events) => {}
                }
            });
        }
    });
    Ok(bound)
}

/// How a forwarded session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SessionEnd {
    /// The client closed first (or both cleanly).
    ClientClosed,
    /// The server side closed or failed while the client was still connected.
    ServerLost(String),
}

async fn forward(
    mut client: TcpStream,
    mut targets: watch::Receiver<Option<Target>>,
    events: mpsc::Sender<Event>,
) {
    let target = {
        let waited =
            tokio::time::timeout(WAIT_FOR_PRIMARY, targets.wait_for(Option::is_some)).await;
        match waited {
            Ok(Ok(t)) => t.clone(),
            _ => None,
        }
    };
    let Some(target) = target else {
        tracing::warn!("no primary node to forward a client to; closing it");
        let _ = client.shutdown().await;
        return;
    };
    let server = match TcpStream::connect((target.host.as_str(), target.port)).await {
        Ok(s) => s,
        Err(e) => {
            report(&events, target.id, format!("could not connect to the primary: {e}")).await;
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    if let SessionEnd::ServerLost(reason) = pipe(client, server).await {
        report(&events, target.id, reason).await;
    }
}

async fn report(events: &mpsc::Sender<Event>, id: usize, reason: String) {
    let _ = events.send(Event::BackendError { id, reason }).await;
}

/// Copies both ways until one side ends; says which.
async fn pipe(client: TcpStream, server: TcpStream) -> SessionEnd {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match cr.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    let _ = sw.shutdown().await;
                    return;
                }
                Ok(n) => {
                    if sw.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    let down = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match sr.read(&mut buf).await {
                Ok(0) => return "the server closed the connection".to_string(),
                Err(e) => return format!("could not read from the server: {e}"),
                Ok(n) => {
                    if cw.write_all(&buf[..n]).await.is_err() {
                        return String::new();
                    }
                }
            }
        }
    };
    tokio::pin!(up, down);
    tokio::select! {
        () = &mut up => {
            // The client is done; let the server's last bytes through.
            let _ = tokio::time::timeout(Duration::from_secs(5), down).await;
            SessionEnd::ClientClosed
        }
        reason = &mut down => {
            if reason.is_empty() {
                return SessionEnd::ClientClosed;
            }
            // A client that sent Terminate closes right after the server does.
            match tokio::time::timeout(Duration::from_millis(200), up).await {
                Ok(()) => SessionEnd::ClientClosed,
                Err(_) => SessionEnd::ServerLost(reason),
            }
        }
    }
}
