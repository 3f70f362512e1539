//! `ReplicationConn::recv_wal` against a scripted server: XLogData payloads read straight
//! into a sink arrive whole and in order, whatever the server's write sizes, the sink's
//! slice sizes, cancelled reads and non-blocking reads in between; other messages come
//! through as events; a payload left half-read is skipped by the message parser.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;
use tokio::io::AsyncWriteExt;
use walstream_protocol::wire::{BackendMessage, ErrorFields, FrontendMessage, Severity};
use walstream_protocol::Lsn;
use walstream_receiver::conn::{
    ConnError, CopyEvent, ReplicationConn, ReplicationMode, StartOutcome, WalEvent, WalSink,
};

mod common;
use common::*;

/// Collects payload bytes; hands out slices of at most `max` bytes.
struct VecSink {
    start: Lsn,
    data: Vec<u8>,
    scratch: Vec<u8>,
    max: usize,
}

impl WalSink for VecSink {
    type Error = ConnError;

    fn spare(&mut self, pos: Lsn) -> Result<&mut [u8], ConnError> {
        assert_eq!(pos, self.start + self.data.len() as u64, "payload bytes out of order");
        self.scratch.resize(self.max, 0);
        Ok(&mut self.scratch[..])
    }

    fn filled(&mut self, n: usize) -> Result<(), ConnError> {
        self.data.extend_from_slice(&self.scratch[..n]);
        Ok(())
    }
}

fn xlogdata(start: Lsn, payload: &[u8]) -> BackendMessage {
    let mut b = BytesMut::new();
    b.put_u8(b'w');
    b.put_u64(start.0);
    b.put_u64(start.0 + payload.len() as u64 + 7);
    b.put_u64(0);
    b.put_slice(payload);
    BackendMessage::CopyData(b.freeze())
}

fn keepalive(n: u8) -> BackendMessage {
    BackendMessage::CopyData(Bytes::from(vec![b'k', n]))
}

/// What the server sends: payload sizes (a keepalive after each when flagged) and a notice
/// in the middle, then CopyDone.
fn script(sizes: &[(usize, bool)], start: Lsn) -> (Vec<BackendMessage>, Vec<u8>) {
    let mut msgs = Vec::new();
    let mut all = Vec::new();
    let mut pos = start;
    for (i, &(n, k)) in sizes.iter().enumerate() {
        let payload: Vec<u8> = (0..n).map(|j| (j as u8).wrapping_mul(7) ^ i as u8).collect();
        msgs.push(xlogdata(pos, &payload));
        pos = pos + n as u64;
        all.extend_from_slice(&payload);
        if k {
            msgs.push(keepalive(i as u8));
        }
        if i == sizes.len() / 2 {
            msgs.push(BackendMessage::NoticeResponse(ErrorFields::new(
                Severity::Notice,
                "00000",
                "halfway",
            )));
        }
    }
    msgs.push(BackendMessage::CopyDone);
    (msgs, all)
}

/// A server that sends `msgs` in writes of the sizes `writes` (cycled), `pause` between.
async fn start_stream(
    msgs: Vec<BackendMessage>,
    writes: Vec<usize>,
    pause: Duration,
) -> (ReplicationConn, tokio::task::JoinHandle<()>) {
    let listener = listen().await;
    let info = conninfo(&listener, "sslmode=disable");
    let server = tokio::spawn(async move {
        let mut peer = Peer::accept(&listener).await;
        peer.handshake().await;
        assert!(matches!(peer.frontend().await, FrontendMessage::Query(_)));
        peer.send(&[copy_both()]).await;
        let mut wire = BytesMut::new();
        for m in &msgs {
            m.encode(&mut wire);
        }
        let mut at = 0;
        for &n in writes.iter().cycle() {
            if at == wire.len() {
                break;
            }
            let n = n.clamp(1, wire.len() - at);
            peer.stream.write_all(&wire[at..at + n]).await.unwrap();
            peer.stream.flush().await.unwrap();
            at += n;
            tokio::task::yield_now().await;
            tokio::time::sleep(pause).await;
        }
        // Wait for the client to end.
        let _ = peer.frontend().await;
    });
    let mut conn = ReplicationConn::connect(&info, ReplicationMode::Physical).await.unwrap();
    let outcome = conn.start_copy_both("START_REPLICATION 0/3000000 TIMELINE 1").await.unwrap();
    assert_eq!(outcome, StartOutcome::CopyBoth);
    (conn, server)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn payloads_arrive_whole_and_in_order(
        sizes in prop::collection::vec((0usize..200_000, any::<bool>()), 1..12),
        writes in prop::collection::vec(1usize..150_000, 1..6),
        max in 1usize..300_000,
        modes in prop::collection::vec(0u8..3, 1..8),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let start = Lsn(0x300_0000);
            let (msgs, all) = script(&sizes, start);
            let (mut conn, server) = start_stream(msgs, writes, Duration::ZERO).await;
            let mut sink = VecSink { start, data: Vec::new(), scratch: Vec::new(), max };
            let mut events = Vec::new();
            let mut i = 0;
            loop {
                // Blocking reads, reads cancelled after a moment, and non-blocking reads.
                let ev = match modes[i % modes.len()] {
                    0 => Some(conn.recv_wal(&mut sink).await.unwrap()),
                    1 => tokio::time::timeout(Duration::from_millis(1), conn.recv_wal(&mut sink))
                        .await
                        .ok()
                        .map(Result::unwrap),
                    _ => conn.try_recv_wal(&mut sink).unwrap(),
                };
                i += 1;
                if let Some(ev) = ev {
                    let done = ev == WalEvent::Other(CopyEvent::CopyDone);
                    events.push(ev);
                    if done {
                        break;
                    }
                }
                if modes[i % modes.len()] == 2 {
                    tokio::task::yield_now().await;
                }
            }
            assert!(sink.data == all, "payload bytes differ");
            let mut pos = start;
            let mut want = Vec::new();
            for (i, &(n, k)) in sizes.iter().enumerate() {
                want.push(WalEvent::XLogData {
                    start: pos,
                    wal_end: pos + n as u64 + 7,
                    len: n,
                });
                pos = pos + n as u64;
                if k {
                    want.push(WalEvent::Other(CopyEvent::CopyData(Bytes::from(vec![b'k', i as u8]))));
                }
            }
            want.push(WalEvent::Other(CopyEvent::CopyDone));
            assert_eq!(events, want);
            conn.terminate().await;
            server.await.unwrap();
        });
    }
}

/// A stream ended in the middle of a payload: the plain message reader skips the rest of
/// it and reads what follows.
#[tokio::test]
async fn a_half_read_payload_is_skipped_by_recv_copy() {
    let start = Lsn(0x300_0000);
    let big = vec![9u8; 100_000];
    let msgs = vec![xlogdata(start, &big), keepalive(1), BackendMessage::CopyDone];
    // The first write ends inside the payload; the rest comes after a pause.
    let pause = Duration::from_millis(300);
    let (mut conn, server) = start_stream(msgs, vec![40_000, 1_000_000], pause).await;
    let mut sink = VecSink { start, data: Vec::new(), scratch: Vec::new(), max: 1 << 20 };
    let first = tokio::time::timeout(Duration::from_millis(100), conn.recv_wal(&mut sink)).await;
    assert!(first.is_err(), "the payload is not complete yet: {first:?}");
    assert!(!sink.data.is_empty() && sink.data.len() < 100_000, "{} bytes", sink.data.len());
    assert!(sink.data.iter().all(|&b| b == 9));
    assert_eq!(conn.recv_copy().await.unwrap(), CopyEvent::CopyData(Bytes::from(vec![b'k', 1])));
    assert_eq!(conn.recv_copy().await.unwrap(), CopyEvent::CopyDone);
    conn.terminate().await;
    server.await.unwrap();
}

proptest! {
    /// The header reader reads back what a walsender writes, for any header fields.
    #[test]
    fn xlogdata_headers_read_back(start in any::<u64>(), end in any::<u64>(), n in 0usize..4096) {
        let start = start.min(u64::MAX - n as u64);
        let mut wire = BytesMut::new();
        let payload = vec![3u8; n];
        let BackendMessage::CopyData(body) = xlogdata(Lsn(start), &payload) else { unreachable!() };
        let mut b = BytesMut::from(&body[..]);
        b[9..17].copy_from_slice(&end.to_be_bytes());
        BackendMessage::CopyData(b.freeze()).encode(&mut wire);
        let h = walstream_receiver::conn::parse_xlogdata_header(&wire).unwrap();
        prop_assert_eq!((h.start, h.wal_end, h.len), (Lsn(start), Lsn(end), n));
        walstream_receiver::conn::fuzz_wal_header(&wire);
    }

    /// Arbitrary bytes: no panic, and agreement with the full parser where it reads one.
    #[test]
    fn the_header_reader_never_panics(data in prop::collection::vec(any::<u8>(), 0..64), w in any::<bool>()) {
        let mut data = data;
        if w && data.len() > 5 {
            data[0] = b'd';
            data[5] = b'w';
        }
        walstream_receiver::conn::fuzz_wal_header(&data);
    }
}
