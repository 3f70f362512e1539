//! Decoder behaviours beyond round trips: overwritten contrecords, page header checks,
//! sticky errors, partial-page encoding.

use bytes::Bytes;

use super::roundtrip_tests::{config, decode_chunked, encode, seg1m, Op};
use super::*;
use crate::lsn::{Lsn, Xid};

fn small(n: usize) -> RecordSpec {
    RecordSpec { rmid: 128, main_data: Bytes::from(vec![9u8; n]), ..Default::default() }
}

fn two_segments() -> Vec<u8> {
    let ops: Vec<Op> = (0..30).map(|_| Op::Record(small(60_000))).collect();
    encode(&ops, Lsn(0x0010_0000)).0
}

fn error_of(data: &[u8]) -> WalError {
    let (_, err, _) = decode_chunked(WalDecoder::new(Lsn(0x0010_0000), seg1m()), data, &[4096]);
    err.expect("an error")
}

#[test]
fn overwritten_contrecord_is_skipped() {
    let mut enc = WalEncoder::new(config(), Lsn(0x0010_0000), Lsn(0x000F_FF00)).unwrap();
    let a = enc.append(&small(8000)).unwrap();
    enc.append_overwritten(&small(5000)).unwrap();
    let b = enc.append(&small(100)).unwrap();
    assert_eq!(b.header.prev, a.lsn);
    assert_eq!(b.lsn, Lsn(0x0010_2018));
    let c = enc.append(&small(10)).unwrap();
    let (_, bytes) = enc.take();
    let (got, err, _) = decode_chunked(WalDecoder::new(Lsn(0x0010_0000), seg1m()), &bytes, &[1000]);
    assert_eq!(err, None);
    let lsns: Vec<Lsn> = got.iter().map(|r| r.lsn).collect();
    assert_eq!(lsns, vec![a.lsn, b.lsn, c.lsn]);
}

#[test]
fn long_header_mismatches() {
    let data = two_segments();
    let second = 1 << 20;
    let mut d = data.clone();
    d[second + 24] ^= 1;
    let e = error_of(&d);
    assert!(matches!(e.kind, WalErrorKind::SystemIdMismatch { .. }), "{e}");
    assert!(e.to_string().starts_with("WAL file is from different database system: WAL file"));
    let mut d = data.clone();
    d[second + 34] ^= 1;
    let e = error_of(&d);
    assert_eq!(
        e.to_string(),
        "WAL file is from different database system: incorrect segment size in page header"
    );
    let mut d = data;
    d[second + 37] ^= 1;
    assert!(matches!(error_of(&d).kind, WalErrorKind::IncorrectBlcksz { .. }));
}

#[test]
fn timeline_must_not_go_back() {
    let mut data = two_segments();
    data[8192 + 4] = 0;
    let e = error_of(&data);
    assert_eq!(
        e.to_string(),
        "out-of-sequence timeline ID 0 (after 1) in log segment 000000010000000000000001, \
         offset 8192"
    );
    assert!(!e.is_end_of_wal());
}

#[test]
fn errors_are_sticky_and_end_of_wal_is_recognised() {
    let ops = vec![Op::Record(small(10))];
    let (mut data, _, end) = encode(&ops, Lsn(0x0010_0000));
    data.resize(8192, 0);
    let mut d = WalDecoder::new(Lsn(0x0010_0000), seg1m());
    d.feed(Bytes::from(data));
    assert!(d.poll().unwrap().is_some());
    let e = d.poll().unwrap_err();
    assert!(e.is_end_of_wal());
    assert_eq!(e.lsn, end);
    assert_eq!(e.to_string(), format!("invalid record length at {end}: wanted 24, got 0"));
    assert_eq!(d.poll().unwrap_err(), e);
}

#[test]
fn start_inside_page_header_or_on_contrecord() {
    let ops: Vec<Op> = (0..3).map(|_| Op::Record(small(6000))).collect();
    let (data, expected, _) = encode(&ops, Lsn(0x0010_0000));
    let (_, err, _) = decode_chunked(WalDecoder::new(Lsn(0x0010_0010), seg1m()), &data, &[9000]);
    assert_eq!(err.unwrap().to_string(), "invalid record offset at 0/100010");
    // Page 1 begins with the rest of the first record.
    let (_, err, _) = decode_chunked(WalDecoder::new(Lsn(0x0010_2000), seg1m()), &data, &[9000]);
    assert_eq!(err.unwrap().to_string(), "contrecord is requested by 0/102018");
    let (got, err, _) =
        decode_chunked(WalDecoder::find_next(Lsn(0x0010_2000), seg1m()), &data, &[9000]);
    assert_eq!(err, None);
    let want: Vec<_> = expected.into_iter().filter(|r| r.lsn >= Lsn(0x0010_2000)).collect();
    assert!(!want.is_empty());
    assert_eq!(got, want);
}

#[test]
fn encoder_continues_a_flushed_partial_page() {
    let mut enc = WalEncoder::new(config(), Lsn(0x0010_0000), Lsn(0x000F_FF00)).unwrap();
    let mut all = Vec::new();
    let mut lsns = Vec::new();
    for n in [10, 5000, 20, 9000, 3] {
        lsns.push(enc.append(&small(n)).unwrap().lsn);
        let (at, bytes) = enc.take();
        assert_eq!(at.0 - 0x0010_0000, all.len() as u64);
        all.extend_from_slice(&bytes);
    }
    assert_eq!(enc.switch(Xid(0)).unwrap().unwrap().next_lsn, Lsn(0x0020_0000));
    let (_, rest) = enc.take();
    all.extend_from_slice(&rest);
    assert_eq!(all.len(), 1 << 20);
    let (got, err, _) = decode_chunked(WalDecoder::new(Lsn(0x0010_0000), seg1m()), &all, &[777]);
    assert_eq!(err, None);
    assert_eq!(got.len(), 6);
    assert_eq!(got.iter().take(5).map(|r| r.lsn).collect::<Vec<_>>(), lsns);
    assert!(WalEncoder::new(config(), Lsn(0x0010_0010), Lsn(0)).is_err());
    assert!(WalEncoder::new(config(), Lsn(0x0010_2010), Lsn(0)).is_err());
}
