//! Tests of [`DirWalSource`] against the real PostgreSQL 15 WAL in `testdata/`; the
//! expected ends come from pg_waldump's recorded output, never from literals.

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use walstream_testdata::{expected, expected_value, shapes_dir, timeline_dir, wal_files};

use super::*;
use walstream_protocol::lsn::segment_file_name;

const T1: TimeLineId = TimeLineId(1);

fn seg_size() -> WalSegSize {
    WalSegSize::new(1 << 20).unwrap()
}

fn seg_start(segno: u64) -> Lsn {
    XLogSegNo(segno).start_lsn(seg_size())
}

/// One record pg_waldump printed: its end, and the flush pointer after it (MAXALIGNed,
/// or the end of the segment after `XLOG_SWITCH`).
struct Rec {
    end: Lsn,
    next: Lsn,
}

fn records(run: &str) -> Vec<Rec> {
    let mut out = Vec::new();
    for line in expected(run).stdout.lines() {
        let after = |key: &str| line.split_once(key).map(|(_, r)| r).unwrap();
        let tot = after("len (rec/tot):").split(',').next().unwrap().split('/').nth(1).unwrap();
        let tot: u64 = tot.trim().parse().unwrap();
        let lsn: Lsn = after("lsn: ").split(',').next().unwrap().parse().unwrap();
        let end = lsn.add_record_bytes(tot - 1, seg_size()) + 1;
        let next = if line.starts_with("rmgr: XLOG") && after("desc: ").starts_with("SWITCH") {
            end.segno(seg_size()).next().start_lsn(seg_size())
        } else {
            end.maxalign()
        };
        out.push(Rec { end, next });
    }
    out
}

/// The flush pointer after the last record that ends at or before `cut`.
fn flushed_at_cut(recs: &[Rec], cut: Lsn) -> Lsn {
    recs.iter().rfind(|r| r.end <= cut).unwrap().next
}

/// Where pg_waldump found the end of WAL: `invalid record length at X/X: wanted 24, got 0`.
fn end_of_wal(run: &str) -> Lsn {
    let err = expected(run).stderr;
    let at = err.split_once("invalid record length at ").unwrap().1;
    at.split(':').next().unwrap().parse().unwrap()
}

fn copy_files(src: &Path, dst: &Path, keep: impl Fn(&str) -> bool) {
    for (name, bytes) in wal_files(src) {
        if keep(&name) {
            fs::write(dst.join(&name), bytes).unwrap();
        }
    }
}

/// Writes a file whole under a temporary name, then renames it into place.
fn put(dir: &Path, name: &str, bytes: &[u8]) {
    let tmp = dir.join("incoming.tmp");
    fs::write(&tmp, bytes).unwrap();
    fs::rename(tmp, dir.join(name)).unwrap();
}

fn shapes_segment(segno: u64) -> Vec<u8> {
    fs::read(shapes_dir().join(segment_file_name(T1, XLogSegNo(segno), seg_size()))).unwrap()
}

fn open(dir: &Path) -> Arc<DirWalSource> {
    DirWalSource::open(dir, DirWalSourceOptions::default()).unwrap()
}

#[test]
fn flushed_end_is_the_end_of_the_last_record() {
    let recs = records("shapes");
    let last = recs.last().unwrap().next;
    assert_eq!(last, end_of_wal("shapes"));
    let src = open(&shapes_dir());
    assert_eq!(src.current_end(), WalEnd { tli: T1, flushed: last });
    assert_eq!(*src.end().borrow(), src.current_end());
    assert_eq!(src.seg_size(), seg_size());
    let first = &wal_files(&shapes_dir())[0].1;
    assert_eq!(src.system_id().to_le_bytes(), first[24..32]);
}

#[test]
fn recycled_and_preallocated_segments_are_not_wal() {
    let recs = records("shapes");
    let dir = tempfile::tempdir().unwrap();
    copy_files(&shapes_dir(), dir.path(), |_| true);
    fs::write(dir.path().join("000000010000000000000010"), shapes_segment(7)).unwrap();
    fs::write(dir.path().join("000000010000000000000011"), vec![0; 1 << 20]).unwrap();
    assert_eq!(open(dir.path()).current_end().flushed, recs.last().unwrap().next);

    // The newest name holds an old segment: WAL ends where segment 0E's records end.
    let dir = tempfile::tempdir().unwrap();
    copy_files(&shapes_dir(), dir.path(), |n| n < "00000001000000000000000F");
    fs::write(dir.path().join("00000001000000000000000F"), shapes_segment(7)).unwrap();
    assert_eq!(open(dir.path()).current_end().flushed, flushed_at_cut(&recs, seg_start(0xF)));
}

#[test]
fn zero_tail_is_not_wal() {
    let recs = records("shapes");
    let last = shapes_segment(0xF);
    for cut in [0x10usize, 0x28, 0x2000, 0x2345, 0x47F8, 0x4800] {
        let dir = tempfile::tempdir().unwrap();
        copy_files(&shapes_dir(), dir.path(), |n| n < "00000001000000000000000F");
        let mut bytes = vec![0; last.len()];
        bytes[..cut].copy_from_slice(&last[..cut]);
        fs::write(dir.path().join("00000001000000000000000F"), bytes).unwrap();
        let want = flushed_at_cut(&recs, seg_start(0xF) + cut as u64);
        assert_eq!(open(dir.path()).current_end().flushed, want, "cut at {cut:#x}");
    }
}

#[test]
fn refresh_follows_growth_segment_by_segment_and_in_a_partial() {
    let recs = records("shapes");
    let dir = tempfile::tempdir().unwrap();
    put(dir.path(), "000000010000000000000007", &shapes_segment(7));
    let src = open(dir.path());
    let mut rx = src.end();
    assert_eq!(src.current_end().flushed, flushed_at_cut(&recs, seg_start(8)));
    let mut seen = vec![src.current_end().flushed];
    for segno in 8..0xF {
        put(
            dir.path(),
            &segment_file_name(T1, XLogSegNo(segno), seg_size()),
            &shapes_segment(segno),
        );
        src.refresh().unwrap();
        let want = flushed_at_cut(&recs, seg_start(segno + 1));
        // A record longer than a segment completes only in a later one.
        assert_eq!(rx.has_changed().unwrap(), want != *seen.last().unwrap());
        let end = *rx.borrow_and_update();
        assert_eq!(end.flushed, want, "segment {segno:X}");
        if want != *seen.last().unwrap() {
            seen.push(end.flushed);
        }
    }
    // Segment 0F arrives as a `.partial` padded with zeros, written in two halves.
    let last = shapes_segment(0xF);
    let partial = dir.path().join("00000001000000000000000F.partial");
    let half = 0x3000;
    let mut padded = vec![0; last.len()];
    padded[..half].copy_from_slice(&last[..half]);
    put(dir.path(), "00000001000000000000000F.partial", &padded);
    src.refresh().unwrap();
    assert_eq!(src.current_end().flushed, flushed_at_cut(&recs, seg_start(0xF) + half as u64));
    seen.push(src.current_end().flushed);
    rx.borrow_and_update();
    src.refresh().unwrap(); // nothing changed
    assert!(!rx.has_changed().unwrap());
    let f = fs::OpenOptions::new().write(true).open(&partial).unwrap();
    f.write_all_at(&last[half..], half as u64).unwrap();
    drop(f);
    src.refresh().unwrap();
    assert_eq!(src.current_end().flushed, recs.last().unwrap().next);
    seen.push(src.current_end().flushed);
    fs::rename(&partial, dir.path().join("00000001000000000000000F")).unwrap();
    src.refresh().unwrap();
    assert_eq!(src.current_end().flushed, recs.last().unwrap().next);
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_task_publishes_growth() {
    let recs = records("shapes");
    let dir = tempfile::tempdir().unwrap();
    put(dir.path(), "000000010000000000000007", &shapes_segment(7));
    let opts = DirWalSourceOptions { poll_interval: Duration::from_millis(10) };
    let src = DirWalSource::open(dir.path(), opts).unwrap();
    let mut rx = src.end();
    let cancel = CancellationToken::new();
    let task = src.watch_for_growth(cancel.clone());
    let want = recs.last().unwrap().next;
    let mut prev = rx.borrow().flushed;
    for segno in 8..=0xF {
        put(
            dir.path(),
            &segment_file_name(T1, XLogSegNo(segno), seg_size()),
            &shapes_segment(segno),
        );
    }
    tokio::time::timeout(Duration::from_secs(20), async {
        while rx.borrow_and_update().flushed != want {
            rx.changed().await.unwrap();
            let now = rx.borrow().flushed;
            assert!(now > prev, "{now} after {prev}");
            prev = now;
        }
    })
    .await
    .unwrap();
    cancel.cancel();
    task.await.unwrap();
}

#[test]
fn timeline_dir_serves_the_newest_timeline() {
    let src = open(&timeline_dir());
    let end = src.current_end();
    assert_eq!(end.tli, TimeLineId(2));
    assert_eq!(end.flushed, end_of_wal("timeline-2"));
    let history = fs::read(timeline_dir().join("00000002.history")).unwrap();
    assert_eq!(src.history_file(TimeLineId(2)).unwrap().unwrap(), history);
    assert!(src.history_file(TimeLineId(3)).unwrap().is_none());
}

#[test]
fn a_new_timeline_is_followed() {
    let switch: Lsn = expected_value("timeline.switch").parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    copy_files(&timeline_dir(), dir.path(), |n| n.starts_with("00000001"));
    let src = open(dir.path());
    assert_eq!(src.current_end().tli, T1);
    assert!(src.current_end().flushed >= switch);

    // A history file alone, at open: the new timeline, its WAL ending at the switch point.
    fs::copy(timeline_dir().join("00000002.history"), dir.path().join("00000002.history")).unwrap();
    let fresh = open(dir.path());
    assert_eq!(fresh.current_end(), WalEnd { tli: TimeLineId(2), flushed: switch });

    // The growing source switches once the new timeline's segment appears.
    src.refresh().unwrap();
    assert_eq!(src.current_end().tli, T1);
    let seg2 = "00000002000000000000000F";
    put(dir.path(), seg2, &fs::read(timeline_dir().join(seg2)).unwrap());
    for s in [&src, &fresh] {
        s.refresh().unwrap();
        let want = WalEnd { tli: TimeLineId(2), flushed: end_of_wal("timeline-2") };
        assert_eq!(s.current_end(), want);
    }
}

#[test]
fn read_stops_at_the_segment_end() {
    let src = open(&shapes_dir());
    let seg7 = shapes_segment(7);
    let got = src.read(T1, Lsn(seg_start(8).0 - 16), 100).unwrap();
    assert_eq!(&got[..], &seg7[seg7.len() - 16..]);
    let got = src.read(T1, seg_start(8), 50).unwrap();
    assert_eq!(&got[..], &shapes_segment(8)[..50]);
    let got = src.read(T1, seg_start(7) + 8192, 8192).unwrap();
    assert_eq!(&got[..], &seg7[8192..16384]);
}

#[test]
fn missing_segment_is_segment_removed() {
    let src = open(&shapes_dir());
    let e = src.read(T1, seg_start(5), 10).unwrap_err();
    assert!(
        matches!(&e, WalSourceError::SegmentRemoved { segment } if segment == "000000010000000000000005")
    );
    assert_eq!(
        e.to_string(),
        "requested WAL segment 000000010000000000000005 has already been removed"
    );
    assert_eq!(e.sqlstate(), "58P01");
    let tl = open(&timeline_dir());
    let e = tl.read(TimeLineId(2), seg_start(0xE), 10).unwrap_err();
    assert!(
        matches!(&e, WalSourceError::SegmentRemoved { segment } if segment == "00000002000000000000000E")
    );
    let seg2 = fs::read(timeline_dir().join("00000002000000000000000F")).unwrap();
    let switch: Lsn = expected_value("timeline.switch").parse().unwrap();
    let off = switch.segment_offset(seg_size()) as usize;
    assert_eq!(&tl.read(TimeLineId(2), switch, 64).unwrap()[..], &seg2[off..off + 64]);
}

#[test]
fn reads_a_partial_segment() {
    let dir = tempfile::tempdir().unwrap();
    copy_files(&shapes_dir(), dir.path(), |n| n < "00000001000000000000000F");
    put(dir.path(), "00000001000000000000000F.partial", &shapes_segment(0xF)[..0x5000]);
    let src = open(dir.path());
    assert_eq!(src.current_end().flushed, end_of_wal("shapes"));
    let got = src.read(T1, seg_start(0xF) + 0x4000, 0x2000).unwrap();
    assert_eq!(&got[..], &shapes_segment(0xF)[0x4000..0x5000]);
}

#[test]
fn remove_old_segments_keeps_the_end() {
    let dir = tempfile::tempdir().unwrap();
    copy_files(&shapes_dir(), dir.path(), |_| true);
    put(dir.path(), "000000010000000000000006.partial", &shapes_segment(7));
    let src = open(dir.path());
    src.read(T1, seg_start(8), 10).unwrap(); // cached open file
    let removed = src.remove_old_segments(XLogSegNo(0xA)).unwrap();
    assert_eq!(
        removed,
        ["000000010000000000000007", "000000010000000000000008", "000000010000000000000009"]
    );
    assert!(matches!(src.read(T1, seg_start(8), 10), Err(WalSourceError::SegmentRemoved { .. })));
    let removed = src.remove_old_segments(XLogSegNo(0x100)).unwrap();
    assert_eq!(removed.len(), 5);
    assert!(!removed.contains(&"00000001000000000000000F".to_string()));
    let mut left: Vec<_> = wal_files(dir.path()).into_iter().map(|f| f.0).collect();
    left.sort();
    assert_eq!(left, ["000000010000000000000006.partial", "00000001000000000000000F"]);
    src.refresh().unwrap();
    assert_eq!(src.current_end().flushed, end_of_wal("shapes"));
}

#[test]
fn open_refuses_what_is_not_a_wal_directory() {
    let dir = tempfile::tempdir().unwrap();
    let e = DirWalSource::open(dir.path(), DirWalSourceOptions::default()).unwrap_err();
    assert!(e.to_string().contains("no WAL segment files"), "{e}");
    fs::write(dir.path().join("README"), b"hello").unwrap();
    fs::write(dir.path().join("000000010000000000000001"), vec![0; 1 << 20]).unwrap();
    let e = DirWalSource::open(dir.path(), DirWalSourceOptions::default()).unwrap_err();
    assert!(e.to_string().contains("valid long page header"), "{e}");
    fs::write(dir.path().join("000000010000000000000007"), &shapes_segment(7)[..8192]).unwrap();
    fs::write(dir.path().join("000000010000000000000008"), shapes_segment(8)).unwrap();
    let e = DirWalSource::open(dir.path(), DirWalSourceOptions::default()).unwrap_err();
    assert!(e.to_string().contains("\"000000010000000000000007\" has size 8192"), "{e}");
}
