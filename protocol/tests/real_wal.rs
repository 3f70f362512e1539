//! The decoder on real PostgreSQL 15 WAL from `testdata/`: every record pg_waldump listed,
//! the same end-of-WAL error, and every single-byte corruption of a record detected at
//! that record.

use bytes::Bytes;
use proptest::prelude::*;
use walstream_protocol::wal::{rmgr, DecodedRecord, WalDecoder, WalError};
use walstream_protocol::{Lsn, TimeLineId, WalSegSize};
use walstream_testdata as td;

fn seg1m() -> WalSegSize {
    WalSegSize::new(1 << 20).unwrap()
}

/// The segment files of `tli` in `dir`, concatenated, with the LSN of their first byte.
fn wal_of(dir: &std::path::Path, tli: u32) -> (Lsn, Bytes) {
    let prefix = format!("{tli:08X}");
    let files: Vec<_> = td::wal_files(dir)
        .into_iter()
        .filter(|(n, _)| n.len() == 24 && n.starts_with(&prefix))
        .collect();
    let (tl, first) =
        walstream_protocol::lsn::parse_segment_file_name(&files[0].0, seg1m()).unwrap();
    assert_eq!(tl, TimeLineId(tli));
    let mut all = Vec::new();
    for (_, b) in files {
        all.extend_from_slice(&b);
    }
    (first.start_lsn(seg1m()), Bytes::from(all))
}

/// Decodes with `find_next(start)` over `data` (which begins at `base`), feeding 64 kB
/// pieces; stops at `end` if given.
fn decode(
    base: Lsn,
    data: &Bytes,
    start: Lsn,
    end: Option<Lsn>,
    tli: u32,
) -> (Vec<DecodedRecord>, Option<WalError>) {
    let mut d = WalDecoder::find_next(start, seg1m());
    d.set_timeline(TimeLineId(tli));
    let from = (d.next_feed_lsn() - base) as usize;
    let mut out = Vec::new();
    for piece in data.slice(from..).chunks(65536) {
        d.feed(Bytes::copy_from_slice(piece));
        loop {
            match d.poll() {
                Ok(Some(r)) if end.is_some_and(|e| r.lsn >= e) => return (out, None),
                Ok(Some(r)) => out.push(r),
                Ok(None) => break,
                // pg_waldump -e reads nothing at or beyond the end: no error there.
                Err(e) if end.is_some_and(|end| e.lsn >= end) => return (out, None),
                Err(e) => return (out, Some(e)),
            }
        }
    }
    (out, None)
}

/// One pg_waldump line's header fields.
#[derive(Debug, PartialEq)]
struct Line {
    rmgr: String,
    rec: u32,
    tot: u32,
    xid: u32,
    lsn: String,
    prev: String,
}

fn field<'a>(line: &'a str, key: &str, stop: char) -> &'a str {
    let at = line.find(key).unwrap_or_else(|| panic!("{key} in {line}")) + key.len();
    let rest = line[at..].trim_start();
    rest.split(stop).next().unwrap().trim()
}

fn parse_line(line: &str) -> Line {
    let lens = field(line, "len (rec/tot):", ',');
    let (rec, tot) = lens.split_once('/').unwrap();
    Line {
        rmgr: field(line, "rmgr:", ' ').to_string(),
        rec: rec.trim().parse().unwrap(),
        tot: tot.trim().parse().unwrap(),
        xid: field(line, "tx:", ',').parse().unwrap(),
        lsn: field(line, "lsn:", ',').to_string(),
        prev: field(line, "prev", ',').to_string(),
    }
}

fn as_line(r: &DecodedRecord) -> Line {
    let fmt = |l: Lsn| {
        let (hi, lo) = l.halves();
        format!("{hi:X}/{lo:08X}")
    };
    Line {
        rmgr: rmgr::name(r.header.rmid).unwrap().into_owned(),
        rec: r.rec_len(),
        tot: r.header.tot_len,
        xid: r.header.xid.0,
        lsn: fmt(r.lsn),
        prev: fmt(r.header.prev),
    }
}

fn check_against(name: &str, records: &[DecodedRecord], err: Option<&WalError>) {
    let expected = td::expected(name);
    let lines: Vec<Line> = expected.stdout.lines().map(parse_line).collect();
    assert_eq!(lines.len(), records.len(), "{name}: record count");
    for (want, got) in lines.iter().zip(records) {
        assert_eq!(&as_line(got), want, "{name}");
    }
    let stderr = match err {
        Some(e) => format!(
            "pg_waldump: error: error in WAL record at {}: {e}\n",
            records.last().map_or(Lsn::INVALID, |r| r.lsn)
        ),
        None => String::new(),
    };
    assert_eq!(stderr, expected.stderr, "{name}: stderr");
}

fn lsn(s: &str) -> Lsn {
    s.parse().unwrap()
}

#[test]
fn shapes_match_pg_waldump() {
    let (base, data) = wal_of(&td::shapes_dir(), 1);
    let start = lsn(&td::expected_value("shapes.start"));
    let (records, err) = decode(base, &data, start, None, 1);
    let err = err.expect("shapes end with end of WAL");
    assert!(err.is_end_of_wal(), "{err}");
    assert!(records.iter().any(|r| r.blocks.iter().any(|b| b.image.is_some())));
    check_against("shapes", &records, Some(&err));
}

#[test]
fn timelines_match_pg_waldump() {
    let dir = td::timeline_dir();
    let start = lsn(&td::expected_value("timeline.start"));
    let switch = lsn(&td::expected_value("timeline.switch"));
    let (base1, data1) = wal_of(&dir, 1);
    let (records, err) = decode(base1, &data1, start, Some(switch), 1);
    check_against("timeline-1", &records, err.as_ref());
    let (base2, data2) = wal_of(&dir, 2);
    let (records, err) = decode(base2, &data2, switch, None, 2);
    assert!(err.as_ref().is_some_and(WalError::is_end_of_wal));
    check_against("timeline-2", &records, err.as_ref());
}

struct Shapes {
    base: Lsn,
    data: Bytes,
    records: Vec<DecodedRecord>,
}

fn shapes() -> &'static Shapes {
    static S: std::sync::OnceLock<Shapes> = std::sync::OnceLock::new();
    S.get_or_init(|| {
        let (base, data) = wal_of(&td::shapes_dir(), 1);
        let start = lsn(&td::expected_value("shapes.start"));
        let (records, _) = decode(base, &data, start, None, 1);
        Shapes { base, data, records }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// Any single-byte change inside a record (header, block headers, payload) is an
    /// error at that record, and the record is never returned.
    #[test]
    fn every_byte_of_a_record_is_checked(
        idx in any::<prop::sample::Index>(),
        off in any::<prop::sample::Index>(),
        xor in 1u8..=255,
    ) {
        let s = shapes();
        let i = 1 + idx.index(s.records.len() - 1);
        let (prev, target) = (&s.records[i - 1], &s.records[i]);
        let k = off.index(target.header.tot_len as usize) as u64;
        let at = target.lsn.add_record_bytes(k, seg1m());
        let mut bytes = s.data.to_vec();
        bytes[(at - s.base) as usize] ^= xor;
        let mut d = WalDecoder::new(prev.lsn, seg1m());
        let from = (d.next_feed_lsn() - s.base) as usize;
        d.feed(Bytes::from(bytes).slice(from..));
        let err = loop {
            match d.poll() {
                Ok(Some(r)) => prop_assert!(r.lsn < target.lsn, "corrupted record returned"),
                Ok(None) => prop_assert!(false, "no error"),
                Err(e) => break e,
            }
        };
        prop_assert_eq!(err.lsn, target.lsn, "{}", err);
    }
}
