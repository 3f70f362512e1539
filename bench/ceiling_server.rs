//! The fastest server pgbench's upsert script can talk to: a ceiling for the node's TPS.
//!
//! It is not a database. It speaks just enough of the extended query protocol for
//! `pgbench -n -M prepared -f SCRIPT` (SSLRequest refused, trust authentication,
//! Parse/Bind/Describe/Execute/Sync), answers a SELECT with one canned int8 row, and for any
//! other statement appends a 96-byte record (the size of the node's commit record) to a
//! zero-filled 16 MiB file and, unless `--fsync off`, syncs it with `fdatasync` before
//! answering, sharing one sync among the connections waiting at the same time (group
//! commit, as PostgreSQL's `XLogFlush` and the node's WAL writer do). Each connection is a
//! thread doing blocking I/O (PostgreSQL's process per backend, without the processes).
//!
//! With `--standby HOST:PORT` each commit also waits for a synchronous standby: a second
//! `ceiling_server --serve-standby PORT [--standby-sync on|off]` that appends what it
//! receives to its own zero-filled file, syncs it (`on`; `off` answers after the write, as
//! `remote_write`) and answers with the byte count it holds. To be an upper bound on any
//! design, the primary sends each record the moment it is inserted — in parallel with its
//! own sync, which PostgreSQL and the node do not do (they send flushed WAL) — over a
//! protocol of bare bytes and 8-byte acknowledgements, and the commit waits for both.
//! Applying is free here, so `remote_apply`'s ceiling is `on`'s. With `--send-after-flush`
//! WAL goes to the standby only once flushed here, as PostgreSQL's walsender sends it (a
//! standby must never have WAL its primary could lose in a crash): the ceiling of any
//! design that keeps that rule.
//!
//! Whatever the node does per transaction beyond this — parsing, planning, executing,
//! locking, WAL encoding, an async runtime — is above this server's cost, so its TPS bounds
//! the node's on the same machine, the same disk and the same pgbench.
//!
//!     rustc -O --edition 2021 bench/ceiling_server.rs -o ceiling_server
//!     ceiling_server --port 55700 --file /path/wal [--fsync off]
//!                    [--standby 127.0.0.1:55701 [--send-after-flush]]
//!     ceiling_server --serve-standby 55701 --file /path/standby-wal [--standby-sync off]
//!
//! Used by `bench/ceiling_bench.py`. Standard library only.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Condvar, Mutex};

const RECORD: usize = 96;
const FILE_SIZE: u64 = 16 * 1024 * 1024;

/// Group commit: records are "inserted" by taking a position; one thread at a time writes
/// and syncs everything inserted so far, the others wait for it.
struct Log {
    file: File,
    fsync: bool,
    /// A synchronous standby's connection (write half), when there is one.
    standby: Option<Mutex<TcpStream>>,
    /// Send WAL to the standby only once flushed here (`--send-after-flush`), as
    /// PostgreSQL and the node do; else at insert.
    send_after_flush: bool,
    state: Mutex<LogState>,
    flushed: Condvar,
}

struct LogState {
    inserted: u64,
    flushed: u64,
    flushing: bool,
    /// What the standby has acknowledged (everything, without a standby).
    acked: u64,
}

impl Log {
    fn commit(&self) -> std::io::Result<()> {
        let mut st = self.state.lock().unwrap();
        st.inserted += RECORD as u64;
        let mine = st.inserted;
        if let (Some(standby), false) = (&self.standby, self.send_after_flush) {
            // Sent at once, in the order inserted (the lock is taken before the state's
            // is released).
            let mut conn = standby.lock().unwrap();
            drop(st);
            conn.write_all(&[0x5au8; RECORD])?;
            drop(conn);
            st = self.state.lock().unwrap();
        } else if self.standby.is_none() {
            st.acked = u64::MAX;
        }
        loop {
            if st.flushed >= mine && st.acked >= mine {
                return Ok(());
            }
            if st.flushed >= mine {
                st = self.flushed.wait(st).unwrap();
                continue;
            }
            if st.flushing {
                st = self.flushed.wait(st).unwrap();
                continue;
            }
            st.flushing = true;
            let (from, to) = (st.flushed, st.inserted);
            drop(st);
            let bytes = vec![0x5au8; (to - from) as usize];
            let at = from % (FILE_SIZE - bytes.len() as u64);
            self.file.write_all_at(&bytes, at)?;
            if self.fsync {
                self.file.sync_data()?;
            }
            if let (Some(standby), true) = (&self.standby, self.send_after_flush) {
                // PostgreSQL's order: a walsender sends only WAL flushed locally.
                standby.lock().unwrap().write_all(&bytes)?;
            }
            st = self.state.lock().unwrap();
            st.flushed = to;
            st.flushing = false;
            self.flushed.notify_all();
        }
    }
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
    };
    let port: u16 = arg("--port").and_then(|p| p.parse().ok()).unwrap_or(55700);
    let path = arg("--file").unwrap_or_else(|| "ceiling.wal".into());
    let fsync = arg("--fsync").as_deref() != Some("off");
    let file = zeroed_file(&path)?;
    if let Some(port) = arg("--serve-standby").and_then(|p| p.parse::<u16>().ok()) {
        let sync = arg("--standby-sync").as_deref() != Some("off");
        return serve_standby(port, file, sync);
    }
    let standby = match arg("--standby") {
        Some(addr) => {
            let conn = TcpStream::connect(addr)?;
            conn.set_nodelay(true)?;
            Some(conn)
        }
        None => None,
    };
    let acks = standby.as_ref().map(TcpStream::try_clone).transpose()?;
    let log = Arc::new(Log {
        file,
        fsync,
        standby: standby.map(Mutex::new),
        send_after_flush: args.iter().any(|a| a == "--send-after-flush"),
        state: Mutex::new(LogState { inserted: 0, flushed: 0, flushing: false, acked: 0 }),
        flushed: Condvar::new(),
    });
    if let Some(mut acks) = acks {
        let log = log.clone();
        std::thread::spawn(move || {
            let mut pos = [0u8; 8];
            while acks.read_exact(&mut pos).is_ok() {
                let mut st = log.state.lock().unwrap();
                st.acked = u64::from_be_bytes(pos);
                log.flushed.notify_all();
            }
        });
    }

    let listener = TcpListener::bind(("127.0.0.1", port))?;
    eprintln!("ceiling_server listening on 127.0.0.1:{port} (fsync {})", if fsync { "on" } else { "off" });
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let log = log.clone();
        std::thread::spawn(move || {
            let _ = serve(conn, &log);
        });
    }
    Ok(())
}

/// Zero-filled and synced up front, as PostgreSQL's `XLogFileInit` does.
fn zeroed_file(path: &str) -> std::io::Result<File> {
    let mut file =
        OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path)?;
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..FILE_SIZE / zeros.len() as u64 {
        file.write_all(&zeros)?;
    }
    file.sync_all()?;
    Ok(file)
}

/// The standby: appends what arrives, syncs it when `sync`, acknowledges the total.
fn serve_standby(port: u16, file: File, sync: bool) -> std::io::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    eprintln!("ceiling standby listening on 127.0.0.1:{port} (sync {})", if sync { "on" } else { "off" });
    // One primary at a time (a probe that connects and closes is served as one).
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        conn.set_nodelay(true)?;
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0u64;
        loop {
            let n = match conn.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            file.write_all_at(&buf[..n], total % (FILE_SIZE - n as u64))?;
            if sync {
                file.sync_data()?;
            }
            total += n as u64;
            if conn.write_all(&total.to_be_bytes()).is_err() {
                break;
            }
        }
    }
    Ok(())
}

fn msg(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
    out.push(tag);
    out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    out.extend_from_slice(body);
}

fn cstr(b: &[u8]) -> (&[u8], &[u8]) {
    match b.iter().position(|&c| c == 0) {
        Some(i) => (&b[..i], &b[i + 1..]),
        None => (b, &[]),
    }
}

fn read_exact_or_eof(s: &mut TcpStream, buf: &mut [u8]) -> std::io::Result<bool> {
    match s.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

fn serve(mut s: TcpStream, log: &Log) -> std::io::Result<()> {
    s.set_nodelay(true)?;
    // Startup: SSLRequest / GSSENCRequest get 'N', then the startup packet.
    loop {
        let mut len = [0u8; 4];
        if !read_exact_or_eof(&mut s, &mut len)? {
            return Ok(());
        }
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize - 4];
        s.read_exact(&mut body)?;
        let code = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
        if code == 80877103 || code == 80877104 {
            s.write_all(b"N")?;
            continue;
        }
        break;
    }
    let mut out = Vec::with_capacity(8192);
    msg(&mut out, b'R', &0u32.to_be_bytes());
    for (k, v) in [
        ("server_version", "15.0"),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO, MDY"),
        ("integer_datetimes", "on"),
        ("standard_conforming_strings", "on"),
    ] {
        let mut b = Vec::new();
        b.extend_from_slice(k.as_bytes());
        b.push(0);
        b.extend_from_slice(v.as_bytes());
        b.push(0);
        msg(&mut out, b'S', &b);
    }
    msg(&mut out, b'K', &[0, 0, 0, 1, 0, 0, 0, 1]);
    msg(&mut out, b'Z', b"I");
    s.write_all(&out)?;
    out.clear();

    let mut statements: HashMap<Vec<u8>, bool> = HashMap::new(); // name -> is a SELECT
    let mut portal_select = false;
    let mut rbuf = vec![0u8; 16384];
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let n = s.read(&mut rbuf)?;
        if n == 0 {
            return Ok(());
        }
        pending.extend_from_slice(&rbuf[..n]);
        let mut at = 0;
        while pending.len() - at >= 5 {
            let tag = pending[at];
            let len = u32::from_be_bytes([
                pending[at + 1],
                pending[at + 2],
                pending[at + 3],
                pending[at + 4],
            ]) as usize;
            if pending.len() - at < 1 + len {
                break;
            }
            let body = &pending[at + 5..at + 1 + len];
            match tag {
                b'P' => {
                    let (name, rest) = cstr(body);
                    let (query, _) = cstr(rest);
                    let select = query.trim_ascii_start().get(..6).is_some_and(|w| w.eq_ignore_ascii_case(b"select"));
                    statements.insert(name.to_vec(), select);
                    msg(&mut out, b'1', &[]);
                }
                b'B' => {
                    let (_portal, rest) = cstr(body);
                    let (stmt, _) = cstr(rest);
                    portal_select = statements.get(stmt).copied().unwrap_or(false);
                    msg(&mut out, b'2', &[]);
                }
                b'D' => {
                    if body.first() == Some(&b'S') {
                        msg(&mut out, b't', &[0, 0]);
                    }
                    if portal_select {
                        // One int8 column "v".
                        let mut b = vec![0, 1];
                        b.extend_from_slice(b"v\0");
                        b.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
                        b.extend_from_slice(&20u32.to_be_bytes());
                        b.extend_from_slice(&8i16.to_be_bytes());
                        b.extend_from_slice(&(-1i32).to_be_bytes());
                        b.extend_from_slice(&0i16.to_be_bytes());
                        msg(&mut out, b'T', &b);
                    } else {
                        msg(&mut out, b'n', &[]);
                    }
                }
                b'E' => {
                    if portal_select {
                        let mut b = vec![0, 1];
                        b.extend_from_slice(&9u32.to_be_bytes());
                        b.extend_from_slice(b"123456789");
                        msg(&mut out, b'D', &b);
                        msg(&mut out, b'C', b"SELECT 1\0");
                    } else {
                        log.commit()?;
                        msg(&mut out, b'C', b"INSERT 0 1\0");
                    }
                }
                b'S' => {
                    msg(&mut out, b'Z', b"I");
                    s.write_all(&out)?;
                    out.clear();
                }
                b'X' => return Ok(()),
                _ => {}
            }
            at += 1 + len;
        }
        pending.drain(..at);
    }
}
