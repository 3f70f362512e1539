//! Tests of the CopyBoth sub-messages: bytes from real PostgreSQL 15 sessions
//! (`reference/captures/*.log`), round trips, and arbitrary input.

use super::*;
use proptest::prelude::*;

fn hex(s: &str) -> Bytes {
    let bytes: Vec<u8> =
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect();
    Bytes::from(bytes)
}

fn encoded(f: impl FnOnce(&mut BytesMut)) -> Bytes {
    let mut buf = BytesMut::new();
    f(&mut buf);
    buf.freeze()
}

#[test]
fn keepalive_from_capture() {
    // proxy_recvwal.log: Keepalive walEnd=0/6002B60 replyRequested=0
    let raw = hex("6b0000000006002b60000303c63499a05500");
    assert_eq!(raw.len(), KEEPALIVE_LEN);
    let k = PrimaryKeepalive {
        wal_end: "0/6002B60".parse().unwrap(),
        send_time: TimestampTz(0x0003_03c6_3499_a055),
        reply_requested: false,
    };
    assert_eq!(parse_server_copy_data(raw.clone()), Ok(ServerCopyData::Keepalive(k)));
    assert_eq!(encoded(|b| k.encode(b)), raw);
}

#[test]
fn standby_status_from_capture() {
    // proxy_recvwal.log: StandbyStatus write=flush=apply=0/6002B60 replyRequested=1
    let raw = hex("720000000006002b600000000006002b600000000006002b60000303c6349999ef01");
    assert_eq!(raw.len(), STANDBY_STATUS_LEN);
    let pos: Lsn = "0/6002B60".parse().unwrap();
    let r = StandbyStatusUpdate {
        write: pos,
        flush: pos,
        apply: pos,
        send_time: TimestampTz(0x0003_03c6_3499_99ef),
        reply_requested: true,
    };
    assert_eq!(parse_client_copy_data(raw.clone()), Ok(ClientCopyData::StandbyStatusUpdate(r)));
    assert_eq!(encoded(|b| r.encode(b)), raw);
    // proxy_cascade.log: write=0/4000000 flush=0/0 apply=0/0 (pg_receivewal, no slot)
    let raw = hex("72000000000400000000000000000000000000000000000000000303c629e24a4900");
    let Ok(ClientCopyData::StandbyStatusUpdate(r)) = parse_client_copy_data(raw.clone()) else {
        panic!("not an r");
    };
    assert_eq!((r.write, r.flush, r.apply), (Lsn(0x400_0000), Lsn(0), Lsn(0)));
    assert_eq!(encoded(|b| r.encode(b)), raw);
}

#[test]
fn hot_standby_feedback_from_capture() {
    // proxy_standby.log: HSFeedback xmin=726 epoch=0 catalog_xmin=0 epoch=0
    let raw = hex("68000303c628096c90000002d6000000000000000000000000");
    assert_eq!(raw.len(), HOT_STANDBY_FEEDBACK_LEN);
    let h = HotStandbyFeedback {
        send_time: TimestampTz(0x0003_03c6_2809_6c90),
        xmin: Xid(726),
        xmin_epoch: 0,
        catalog_xmin: Xid(0),
        catalog_xmin_epoch: 0,
    };
    assert_eq!(parse_client_copy_data(raw.clone()), Ok(ClientCopyData::HotStandbyFeedback(h)));
    assert_eq!(encoded(|b| h.encode(b)), raw);
}

#[test]
fn xlogdata_shares_the_buffer() {
    let w = XLogData {
        start: Lsn(0x400_0000),
        wal_end: Lsn(0x400_0060),
        send_time: TimestampTz(7),
        data: Bytes::from_static(&[0x10, 0xd1, 6, 0]),
    };
    let raw = encoded(|b| w.encode(b));
    assert_eq!(raw.len(), XLOGDATA_HEADER_LEN + 4);
    assert_eq!(&raw[..XLOGDATA_HEADER_LEN], &w.header());
    let header = encoded(|b| XLogData::encode_header(w.start, w.wal_end, w.send_time, b));
    assert_eq!(&header[..], &w.header());
    let Ok(ServerCopyData::XLogData(back)) = parse_server_copy_data(raw.clone()) else {
        panic!("not a w");
    };
    assert_eq!(back, w);
    assert_eq!(back.data.as_ptr(), raw[XLOGDATA_HEADER_LEN..].as_ptr());
}

#[test]
fn errors_with_postgres_texts() {
    let e = parse_server_copy_data(Bytes::from_static(b"x123")).unwrap_err();
    assert_eq!(e.to_string(), "unrecognized streaming header: \"x\"");
    let e = parse_server_copy_data(Bytes::from_static(b"k1234567812345678")).unwrap_err();
    assert_eq!(e.to_string(), "streaming header too small: 17");
    let e = parse_server_copy_data(Bytes::from_static(b"w")).unwrap_err();
    assert_eq!(e, CopyDataError::StreamingHeaderTooSmall(1));
    let e = parse_server_copy_data(Bytes::new()).unwrap_err();
    assert_eq!(e, CopyDataError::StreamingHeaderTooSmall(0));
    let e = parse_client_copy_data(Bytes::from_static(b"P")).unwrap_err();
    assert_eq!((e.to_string().as_str(), e.sqlstate()), ("unexpected message type \"P\"", "08P01"));
    let e = parse_client_copy_data(Bytes::from_static(b"r\0\0")).unwrap_err();
    assert_eq!(e.to_string(), "insufficient data left in message");
    assert_eq!(parse_client_copy_data(Bytes::new()), Err(CopyDataError::NoDataLeft));
    // Trailing bytes are ignored, as walsender.c and receivelog.c ignore them.
    let mut long = BytesMut::from(&hex("6b0000000006002b60000303c63499a05500")[..]);
    long.put_u8(9);
    assert!(parse_server_copy_data(long.freeze()).is_ok());
}

fn lsn() -> impl Strategy<Value = Lsn> {
    any::<u64>().prop_map(Lsn)
}

fn ts() -> impl Strategy<Value = TimestampTz> {
    any::<i64>().prop_map(TimestampTz)
}

fn server_msg() -> impl Strategy<Value = ServerCopyData> {
    prop_oneof![
        (lsn(), lsn(), ts(), proptest::collection::vec(any::<u8>(), 0..64)).prop_map(
            |(start, wal_end, send_time, data)| ServerCopyData::XLogData(XLogData {
                start,
                wal_end,
                send_time,
                data: Bytes::from(data),
            })
        ),
        (lsn(), ts(), any::<bool>()).prop_map(|(wal_end, send_time, reply_requested)| {
            ServerCopyData::Keepalive(PrimaryKeepalive { wal_end, send_time, reply_requested })
        }),
    ]
}

fn client_msg() -> impl Strategy<Value = ClientCopyData> {
    prop_oneof![
        (lsn(), lsn(), lsn(), ts(), any::<bool>()).prop_map(|(write, flush, apply, t, reply)| {
            ClientCopyData::StandbyStatusUpdate(StandbyStatusUpdate {
                write,
                flush,
                apply,
                send_time: t,
                reply_requested: reply,
            })
        }),
        (ts(), any::<[u32; 4]>()).prop_map(|(send_time, [a, b, c, d])| {
            ClientCopyData::HotStandbyFeedback(HotStandbyFeedback {
                send_time,
                xmin: Xid(a),
                xmin_epoch: b,
                catalog_xmin: Xid(c),
                catalog_xmin_epoch: d,
            })
        }),
    ]
}

proptest! {
    #[test]
    fn server_messages_round_trip(m in server_msg()) {
        let raw = encoded(|b| m.encode(b));
        prop_assert_eq!(parse_server_copy_data(raw.clone()), Ok(m.clone()));
    }

    #[test]
    fn client_messages_round_trip(m in client_msg()) {
        let raw = encoded(|b| m.encode(b));
        prop_assert_eq!(parse_client_copy_data(raw), Ok(m));
    }

    #[test]
    fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = parse_server_copy_data(Bytes::from(bytes.clone()));
        let _ = parse_client_copy_data(Bytes::from(bytes));
    }

    #[test]
    fn never_panics_on_typed_prefixes(
        kind in prop::sample::select(b"wkrh".to_vec()),
        rest in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let mut v = vec![kind];
        v.extend(rest);
        let _ = parse_server_copy_data(Bytes::from(v.clone()));
        let _ = parse_client_copy_data(Bytes::from(v));
    }
}
