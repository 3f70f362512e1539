//! A loopback TCP proxy between a replication client and a PostgreSQL server that
//! corrupts the WAL it relays: in the server's CopyData `'w'` (XLogData) messages the
//! byte at one chosen WAL position is flipped, every time that position passes — or,
//! started with a list of positions ([`CorruptingProxy::start_targets`]), each position
//! once, in order, the next one only after the previous was flipped (a campaign of many
//! corruptions against a client that stops at each and starts again).
//!
//! The client's bytes go to the server untouched. The server's bytes are parsed as
//! FE/BE messages (1-byte type, 4-byte big-endian length that counts itself), except the
//! one-byte answers to SSLRequest / GSSENCRequest, which the proxy relays while it
//! forwards the client's startup packets itself.

use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use walstream_protocol::Lsn;

/// SSLRequest's and GSSENCRequest's request codes (`pqcomm.h`).
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;

/// The largest message the proxy accepts from either side (a sanity bound).
const MAX_MESSAGE: usize = 64 << 20;

/// What the proxy does to the server's stream.
#[derive(Debug, Clone, Copy)]
pub struct Corruption {
    /// The WAL position whose byte is flipped (XOR 0xFF) in every XLogData covering it.
    pub at: Lsn,
    /// A pause before relaying each XLogData message, to slow the stream down.
    pub delay_per_xlogdata: Duration,
}

/// State shared by the proxy's threads.
#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    /// How many times the byte was flipped.
    flips: AtomicU64,
    /// The highest WAL end relayed in XLogData.
    relayed_end: AtomicU64,
    /// Every socket the proxy holds, shut down when it stops.
    sockets: Mutex<Vec<TcpStream>>,
    /// Positions still to flip once each, in order.
    targets: Mutex<std::collections::VecDeque<u64>>,
}

/// A running corrupting proxy on a free loopback port; stopped (listener closed, every
/// connection shut down, threads joined) when dropped.
pub struct CorruptingProxy {
    port: u16,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl CorruptingProxy {
    /// Starts a proxy to 127.0.0.1:`upstream` applying `corruption`.
    ///
    /// # Errors
    /// If no port can be bound.
    pub fn start(upstream: u16, corruption: Corruption) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the proxy")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let accept = std::thread::spawn(move || accept_loop(&listener, upstream, corruption, &s));
        Ok(CorruptingProxy { port, shared, accept: Some(accept) })
    }

    /// Starts a proxy to 127.0.0.1:`upstream` that flips the byte at each of `targets`
    /// (ascending) once: the first XLogData covering the front target gets it flipped and
    /// the target is used up; until then the later ones wait (choose targets the client's
    /// stream will reach).
    ///
    /// # Errors
    /// If no port can be bound.
    pub fn start_targets(upstream: u16, targets: Vec<Lsn>) -> Result<Self> {
        let proxy = Self::start(
            upstream,
            Corruption { at: Lsn(u64::MAX), delay_per_xlogdata: Duration::ZERO },
        )?;
        if let Ok(mut t) = proxy.shared.targets.lock() {
            t.extend(targets.iter().map(|l| l.0));
        }
        Ok(proxy)
    }

    /// How many targets of [`CorruptingProxy::start_targets`] are still to flip.
    pub fn targets_left(&self) -> usize {
        self.shared.targets.lock().map_or(0, |t| t.len())
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// How many times the chosen byte was flipped so far.
    pub fn flips(&self) -> u64 {
        self.shared.flips.load(Ordering::SeqCst)
    }

    /// The end of the WAL relayed so far (0/0 before any XLogData).
    pub fn relayed_end(&self) -> Lsn {
        Lsn(self.shared.relayed_end.load(Ordering::SeqCst))
    }
}

impl Drop for CorruptingProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Ok(sockets) = self.shared.sockets.lock() {
            for s in sockets.iter() {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// Accepts clients until stopped; each gets a connection to the server and two relay
/// threads (joined before this returns).
fn accept_loop(listener: &TcpListener, upstream: u16, corruption: Corruption, s: &Arc<Shared>) {
    let mut threads = Vec::new();
    while !s.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                let s = s.clone();
                threads.push(std::thread::spawn(move || {
                    let _ = relay(client, upstream, corruption, &s);
                }));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    for t in threads {
        let _ = t.join();
    }
}

/// One client: its startup packets, then a raw copy client → server in a thread and a
/// corrupting copy server → client here.
fn relay(client: TcpStream, upstream: u16, corruption: Corruption, s: &Arc<Shared>) -> Result<()> {
    client.set_nonblocking(false)?;
    let server = TcpStream::connect(("127.0.0.1", upstream))?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    if let Ok(mut sockets) = s.sockets.lock() {
        sockets.push(client.try_clone()?);
        sockets.push(server.try_clone()?);
    }
    let shutdown_both = |a: &TcpStream, b: &TcpStream| {
        let _ = a.shutdown(Shutdown::Both);
        let _ = b.shutdown(Shutdown::Both);
    };
    let res = relay_startup(&client, &server);
    if res.is_err() || s.stop.load(Ordering::SeqCst) {
        shutdown_both(&client, &server);
        return res;
    }
    let (mut c_read, mut s_write) = (client.try_clone()?, server.try_clone()?);
    let up = std::thread::spawn(move || {
        let _ = io::copy(&mut c_read, &mut s_write);
        let _ = s_write.shutdown(Shutdown::Write);
    });
    let res = relay_server(&server, &client, corruption, s);
    shutdown_both(&client, &server);
    let _ = up.join();
    res
}

/// Forwards the client's packets up to its StartupMessage; an SSLRequest or
/// GSSENCRequest gets the server's one-byte answer relayed back.
fn relay_startup(client: &TcpStream, server: &TcpStream) -> Result<()> {
    let (mut c, mut sv) = (client, server);
    loop {
        let mut len = [0u8; 4];
        c.read_exact(&mut len)?;
        let n = u32::from_be_bytes(len) as usize;
        anyhow::ensure!((8..MAX_MESSAGE).contains(&n), "startup packet of {n} bytes");
        let mut body = vec![0u8; n - 4];
        c.read_exact(&mut body)?;
        sv.write_all(&len)?;
        sv.write_all(&body)?;
        let code = body.get(..4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        if !matches!(code, Some(SSL_REQUEST | GSSENC_REQUEST)) {
            return Ok(());
        }
        let mut answer = [0u8; 1];
        sv.read_exact(&mut answer)?;
        c.write_all(&answer)?;
        anyhow::ensure!(answer[0] == b'N', "the server accepted encryption; cannot proxy");
    }
}

/// Copies the server's messages to the client, flipping the chosen WAL byte.
fn relay_server(
    server: &TcpStream,
    client: &TcpStream,
    corruption: Corruption,
    s: &Shared,
) -> Result<()> {
    let mut from = BufReader::with_capacity(256 << 10, server);
    let mut to = client;
    // One target per connection: a client reading ahead must not use up the next one.
    let mut flipped_target = false;
    loop {
        let mut head = [0u8; 5];
        from.read_exact(&mut head)?;
        let n = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        anyhow::ensure!((4..MAX_MESSAGE).contains(&n), "message of {n} bytes");
        let mut body = vec![0u8; n - 4];
        from.read_exact(&mut body)?;
        if head[0] == b'd' && body.first() == Some(&b'w') {
            corrupt_xlogdata(&mut body, corruption, s, &mut flipped_target);
            if !corruption.delay_per_xlogdata.is_zero() {
                std::thread::sleep(corruption.delay_per_xlogdata);
            }
        }
        to.write_all(&head)?;
        to.write_all(&body)?;
    }
}

/// In an XLogData body (`'w'`, u64 start, u64 walEnd, i64 sendTime, data), flips the
/// byte at `corruption.at` if the data covers it, and the front target of the list unless
/// this connection has had one (`flipped_target`).
fn corrupt_xlogdata(
    body: &mut [u8],
    corruption: Corruption,
    s: &Shared,
    flipped_target: &mut bool,
) {
    const HEADER: usize = 25;
    let Some(start) = body.get(1..9).and_then(|b| <[u8; 8]>::try_from(b).ok()) else { return };
    let start = u64::from_be_bytes(start);
    let len = body.len().saturating_sub(HEADER) as u64;
    s.relayed_end.fetch_max(start + len, Ordering::SeqCst);
    let at = corruption.at.0;
    if at >= start && at < start + len {
        if let Some(b) = usize::try_from(at - start).ok().and_then(|o| body.get_mut(HEADER + o)) {
            *b ^= 0xFF;
            s.flips.fetch_add(1, Ordering::SeqCst);
        }
    }
    if *flipped_target {
        return;
    }
    if let Ok(mut targets) = s.targets.lock() {
        if let Some(&at) = targets.front() {
            if at >= start && at < start + len {
                let o = usize::try_from(at - start).ok();
                if let Some(b) = o.and_then(|o| body.get_mut(HEADER + o)) {
                    *b ^= 0xFF;
                    s.flips.fetch_add(1, Ordering::SeqCst);
                    targets.pop_front();
                    *flipped_target = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xlogdata(start: u64, data: &[u8]) -> Vec<u8> {
        let mut b = vec![b'w'];
        b.extend_from_slice(&start.to_be_bytes());
        b.extend_from_slice(&[0; 16]);
        b.extend_from_slice(data);
        b
    }

    fn corruption(at: u64) -> Corruption {
        Corruption { at: Lsn(at), delay_per_xlogdata: Duration::ZERO }
    }

    #[test]
    fn targets_are_flipped_once_each_in_order() {
        let s = Shared::default();
        s.targets.lock().unwrap().extend([0x1001, 0x1003]);
        let none = corruption(u64::MAX);
        let mut body = xlogdata(0x1000, &[1, 2, 3, 4]);
        corrupt_xlogdata(&mut body, none, &s, &mut false);
        assert_eq!(&body[25..], &[1, 2 ^ 0xFF, 3, 4], "one target per message");
        // The client stops and streams the same bytes again: now the next target.
        let mut body = xlogdata(0x1000, &[1, 2, 3, 4]);
        corrupt_xlogdata(&mut body, none, &s, &mut false);
        assert_eq!(&body[25..], &[1, 2, 3, 4 ^ 0xFF]);
        let mut body = xlogdata(0x1000, &[1, 2, 3, 4]);
        corrupt_xlogdata(&mut body, none, &s, &mut false);
        assert_eq!(&body[25..], &[1, 2, 3, 4]);
        assert!(s.targets.lock().unwrap().is_empty());
        assert_eq!(s.flips.load(Ordering::SeqCst), 2);
        // Within one connection, one target: the client stops at it before the next.
        s.targets.lock().unwrap().extend([0x2000, 0x2010]);
        let mut used = false;
        let mut body = xlogdata(0x2000, &[0; 4]);
        corrupt_xlogdata(&mut body, none, &s, &mut used);
        let mut body = xlogdata(0x2010, &[0; 4]);
        corrupt_xlogdata(&mut body, none, &s, &mut used);
        assert_eq!(&body[25..], &[0; 4]);
        assert_eq!(s.targets.lock().unwrap().len(), 1);
    }

    #[test]
    fn flips_only_the_chosen_byte_when_covered() {
        let s = Shared::default();
        let mut body = xlogdata(0x1000, &[1, 2, 3, 4]);
        corrupt_xlogdata(&mut body, corruption(0x1002), &s, &mut false);
        assert_eq!(&body[25..], &[1, 2, 3 ^ 0xFF, 4]);
        assert_eq!(s.flips.load(Ordering::SeqCst), 1);
        assert_eq!(s.relayed_end.load(Ordering::SeqCst), 0x1004);
        let mut body = xlogdata(0x1000, &[1, 2, 3, 4]);
        corrupt_xlogdata(&mut body, corruption(0x1004), &s, &mut false);
        assert_eq!(&body[25..], &[1, 2, 3, 4]);
        assert_eq!(s.flips.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn short_bodies_are_left_alone() {
        let s = Shared::default();
        for n in 0..25 {
            let mut body = xlogdata(0, &[]);
            body.truncate(n);
            let before = body.clone();
            corrupt_xlogdata(&mut body, corruption(0), &s, &mut false);
            assert_eq!(body, before);
        }
        assert_eq!(s.flips.load(Ordering::SeqCst), 0);
    }
}
