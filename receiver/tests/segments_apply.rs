//! The apply pipeline against real PostgreSQL 15 WAL from `testdata/`: per-rmgr counts
//! equal pg_waldump's statistics, a flipped byte stops it at that record, and the
//! timeline switch is crossed.

use bytes::Bytes;
use proptest::prelude::*;
use walstream_protocol::wal::{rmgr, DecodedRecord, RecordView};
use walstream_protocol::{Lsn, TimeLineId, WalSegSize};
use walstream_receiver::apply::{Apply, ApplyError, ApplyPipeline, VerifyingApplier};
use walstream_testdata::{expected, expected_value, shapes_dir, timeline_dir, wal_files};

const SEG: u64 = 1 << 20;

fn seg_size() -> WalSegSize {
    WalSegSize::new(SEG).unwrap()
}

fn shapes() -> (Lsn, Bytes) {
    let start: Lsn = expected_value("shapes.start").parse().unwrap();
    let files = wal_files(&shapes_dir());
    (start, Bytes::from(files.into_iter().flat_map(|(_, b)| b).collect::<Vec<u8>>()))
}

/// Feeds `data` (which begins at `start`) in pieces of `sizes`, applying after each.
fn run(
    p: &mut ApplyPipeline,
    a: &mut dyn Apply,
    start: Lsn,
    data: &Bytes,
    sizes: &[usize],
) -> Result<Lsn, ApplyError> {
    let mut pos = 0;
    let mut applied = p.applied();
    for &n in sizes.iter().cycle() {
        if pos >= data.len() {
            break;
        }
        let n = n.clamp(1, data.len() - pos);
        p.feed(start + pos as u64, &data.slice(pos..pos + n))?;
        pos += n;
        applied = p.apply_available(a)?;
    }
    Ok(applied)
}

/// `(name, N, record size, FPI size)` of each line of a `pg_waldump --stats` table.
fn waldump_stats(text: &str) -> Vec<(String, u64, u64, u64)> {
    let mut out = Vec::new();
    for line in text.lines().skip(3) {
        if line.trim_start().starts_with("--") {
            break;
        }
        let mut plain = String::new();
        let mut depth = 0;
        for c in line.chars() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ if depth == 0 => plain.push(c),
                _ => {}
            }
        }
        let t: Vec<&str> = plain.split_whitespace().collect();
        let num = |i: usize| t[i].parse::<u64>().unwrap();
        out.push((t[0].to_string(), num(1), num(2), num(3)));
    }
    out
}

/// Records per rmgr name in pg_waldump's per-record output.
fn waldump_counts(text: &str) -> std::collections::BTreeMap<String, u64> {
    let mut m = std::collections::BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("rmgr: ") {
            let name = rest.split_whitespace().next().unwrap().to_string();
            *m.entry(name).or_insert(0) += 1;
        }
    }
    m
}

fn sizes() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(prop_oneof![1usize..64, 64usize..9000, 9000usize..400_000], 1..12)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    /// The shapes WAL in any chunking: the counts and sizes per resource manager are
    /// pg_waldump's, and it ends where pg_waldump ended.
    #[test]
    fn counts_match_pg_waldump_stats(sizes in sizes()) {
        let (start, data) = shapes();
        let mut p = ApplyPipeline::find_next(start, seg_size(), TimeLineId(1));
        let mut a = VerifyingApplier::new();
        let applied = run(&mut p, &mut a, start, &data, &sizes).unwrap();
        let stats = a.stats();
        let published = a.rmgr_counts().snapshot();
        let counted: Vec<(String, u64)> =
            stats.per_rmgr.iter().map(|s| (s.name.clone(), s.count)).collect();
        prop_assert_eq!(published, counted, "rmgr_counts() and stats()");
        let want = waldump_stats(&expected("shapes-stats").stdout);
        prop_assert_eq!(want.len(), 22);
        for (name, n, rec, fpi) in want {
            let got = stats.rmgr(&name).map_or((0, 0, 0), |s| (s.count, s.rec_bytes, s.fpi_bytes));
            prop_assert_eq!(got, (n, rec, fpi), "{}", name);
        }
        let end = p.end_of_wal().unwrap();
        let stderr = expected("shapes").stderr;
        prop_assert!(stderr.trim_end().ends_with(&end.to_string()), "{} vs {}", end, stderr);
        prop_assert_eq!(applied, end.lsn);
    }
}

/// Where the record after `r` starts (`EndRecPtr`).
fn next_lsn(r: &DecodedRecord) -> Lsn {
    if r.header.rmid == rmgr::RM_XLOG_ID && r.rmgr_info() == 0x40 {
        Lsn(r.end_lsn.0.div_ceil(SEG) * SEG)
    } else {
        r.end_lsn.maxalign()
    }
}

/// Collects every record.
#[derive(Default)]
struct Collect(Vec<DecodedRecord>);

impl Apply for Collect {
    fn apply(&mut self, record: &RecordView<'_>) -> Result<(), ApplyError> {
        let record = &record.to_owned_record();
        self.0.push(record.clone());
        Ok(())
    }
}

/// The first three segments of shapes, and their records.
fn three_segments() -> (Lsn, Bytes, Vec<DecodedRecord>) {
    let (start, data) = shapes();
    let data = data.slice(..3 << 20);
    let mut p = ApplyPipeline::find_next(start, seg_size(), TimeLineId(1));
    let mut c = Collect::default();
    run(&mut p, &mut c, start, &data, &[usize::MAX]).unwrap();
    (start, data, c.0)
}

/// Whether `lsn` lies in a page header.
fn in_page_header(lsn: Lsn) -> bool {
    let hdr = if lsn.0 % SEG < 8192 { 40 } else { 24 };
    lsn.page_offset() < hdr
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// A flipped byte of a record: Corrupt (or, if its length became 0, the end of WAL)
    /// at that record, every record before it applied, none after.
    #[test]
    fn a_flipped_byte_stops_at_its_record(
        pick in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        mask in 1u8..,
        sizes in sizes(),
    ) {
        let (start, data, recs) = three_segments();
        let recs: Vec<_> = recs.into_iter().filter(|r| r.end_lsn.0 < start.0 + (2 << 20)).collect();
        let i = pick.index(recs.len());
        let r = &recs[i];
        let positions: Vec<Lsn> =
            (r.lsn.0..r.end_lsn.0).map(Lsn).filter(|&l| !in_page_header(l)).collect();
        let pos = positions[at.index(positions.len())];
        let mut bad = data.to_vec();
        bad[(pos.0 - start.0) as usize] ^= mask;
        let bad = Bytes::from(bad);

        let mut p = ApplyPipeline::find_next(start, seg_size(), TimeLineId(1));
        let mut a = VerifyingApplier::new();
        let res = run(&mut p, &mut a, start, &bad, &sizes);
        match &res {
            Err(ApplyError::Corrupt { lsn, .. }) => prop_assert_eq!(*lsn, r.lsn),
            Ok(_) => prop_assert_eq!(p.end_of_wal().map(|e| e.lsn), Some(r.lsn)),
            Err(e) => prop_assert!(false, "unexpected {}", e),
        }
        prop_assert_eq!(a.stats().records, i as u64);
        let before = if i == 0 { start } else { next_lsn(&recs[i - 1]) };
        prop_assert_eq!(p.applied(), before);
    }
}

/// An applier refusing a record: nothing from it on counts as applied, and it sticks.
#[test]
fn an_applier_error_stops_before_the_record() {
    struct FailAt(usize, usize);
    impl Apply for FailAt {
        fn apply(&mut self, r: &RecordView<'_>) -> Result<(), ApplyError> {
            self.1 += 1;
            if self.1 == self.0 {
                return Err(ApplyError::Failed { lsn: r.lsn, message: "no".into() });
            }
            Ok(())
        }
    }
    let (start, data, recs) = three_segments();
    let mut p = ApplyPipeline::find_next(start, seg_size(), TimeLineId(1));
    let e = run(&mut p, &mut FailAt(100, 0), start, &data, &[50_000]).unwrap_err();
    assert_eq!(e, ApplyError::Failed { lsn: recs[99].lsn, message: "no".into() });
    assert_eq!(p.applied(), next_lsn(&recs[98]));
    assert_eq!(p.apply_available(&mut VerifyingApplier::new()), Err(e));
}

/// Timeline 1 up to the switch point, then timeline 2 restreamed from the switch
/// segment's start: every record pg_waldump printed for both, once.
#[test]
fn the_timeline_switch_is_crossed() {
    let files = wal_files(&timeline_dir());
    let get =
        |n: &str| Bytes::from(files.iter().find(|(f, _)| f == n).map(|(_, b)| b.clone()).unwrap());
    let start: Lsn = expected_value("timeline.start").parse().unwrap();
    let switch: Lsn = expected_value("timeline.switch").parse().unwrap();
    let mut p = ApplyPipeline::find_next(start, seg_size(), TimeLineId(1));
    let mut a = VerifyingApplier::new();
    run(&mut p, &mut a, start, &get("00000001000000000000000E"), &[100_000]).unwrap();
    let f1 = get("00000001000000000000000F").slice(..(switch.0 % SEG) as usize);
    run(&mut p, &mut a, start + SEG, &f1, &[100_000]).unwrap();
    p.switch_timeline(TimeLineId(2), switch).unwrap();
    run(&mut p, &mut a, start + SEG, &get("00000002000000000000000F"), &[77_777]).unwrap();

    let mut want = waldump_counts(&expected("timeline-1").stdout);
    for (k, v) in waldump_counts(&expected("timeline-2").stdout) {
        *want.entry(k).or_insert(0) += v;
    }
    let got: std::collections::BTreeMap<String, u64> =
        a.stats().per_rmgr.into_iter().map(|s| (s.name, s.count)).collect();
    assert_eq!(got, want);
    let end = p.end_of_wal().unwrap();
    assert!(expected("timeline-2").stderr.trim_end().ends_with(&end.to_string()));
}
