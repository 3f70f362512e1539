//! The segment writer against real PostgreSQL 15 WAL from `testdata/`: files written from
//! randomly chunked streams are byte-identical to the primary's; crashes and torn tails
//! never make the resume point pass valid WAL, and resuming reproduces the files.

use std::fs;
use std::path::Path;

use bytes::Bytes;
use proptest::prelude::*;
use walstream_protocol::wal::WalDecoder;
use walstream_protocol::{Lsn, TimeLineId, WalSegSize};
use walstream_receiver::segments::{ResumePoint, SegmentWriter, WriterOptions};
use walstream_testdata::{expected_value, shapes_dir, timeline_dir, wal_files};

const TLI1: TimeLineId = TimeLineId(1);
const SEG: u64 = 1 << 20;

fn seg_size() -> WalSegSize {
    WalSegSize::new(SEG).unwrap()
}

/// The shapes WAL as one stream: its start and bytes (the files are consecutive).
fn shapes() -> (Lsn, Vec<u8>, Vec<String>) {
    let files = wal_files(&shapes_dir());
    let start: Lsn = expected_value("shapes.start").parse().unwrap();
    let names = files.iter().map(|(n, _)| n.clone()).collect();
    (start, files.into_iter().flat_map(|(_, b)| b).collect(), names)
}

/// Writes `data`, which begins at `start`, in pieces of `sizes` (cycled).
fn write_chunked(w: &mut SegmentWriter, tli: TimeLineId, start: Lsn, data: &[u8], sizes: &[usize]) {
    let mut pos = 0;
    for &n in sizes.iter().cycle() {
        if pos >= data.len() {
            break;
        }
        let n = n.clamp(1, data.len() - pos);
        w.write(tli, start + pos as u64, &data[pos..pos + n]).unwrap();
        pos += n;
    }
}

/// Every segment file of `original` that lies inside `stream[..upto]` is in `dir`,
/// identical; the one holding `upto` is a `.partial` holding the prefix, then zeros.
fn assert_files(dir: &Path, names: &[String], stream: &[u8], upto: usize) {
    for (i, name) in names.iter().enumerate() {
        let (lo, hi) = (i * SEG as usize, (i + 1) * SEG as usize);
        if hi <= upto {
            let got = fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(got == stream[lo..hi], "{name} differs");
        } else if lo < upto {
            let got = fs::read(dir.join(format!("{name}.partial"))).unwrap();
            let n = upto - lo;
            assert_eq!(got.len(), SEG as usize);
            assert!(got[..n] == stream[lo..upto], "{name}.partial prefix differs");
            assert!(got[n..].iter().all(|&b| b == 0), "{name}.partial is not zero-padded");
        } else {
            assert!(!dir.join(name).exists() && !dir.join(format!("{name}.partial")).exists());
        }
    }
}

/// (start, end before alignment) of every record of the stream, decoded cleanly.
fn records(start: Lsn, stream: &[u8]) -> Vec<(Lsn, Lsn)> {
    let mut d = WalDecoder::find_next(start, seg_size());
    d.feed(Bytes::copy_from_slice(stream));
    let mut out = Vec::new();
    while let Ok(Some(r)) = d.poll_ref() {
        out.push((r.lsn, r.end_lsn));
    }
    out
}

/// The valid end the resume point must report for a `.partial` whose bytes before
/// `limit` are the original: the end of the last record that begins in its segment
/// and ends by `limit`, else the segment start.
fn expected_valid_end(recs: &[(Lsn, Lsn)], limit: Lsn) -> Lsn {
    let seg_start = Lsn(limit.0 / SEG * SEG);
    recs.iter()
        .filter(|(l, e)| *l >= seg_start && *e <= limit)
        .map(|(_, e)| *e)
        .max()
        .unwrap_or(seg_start)
}

fn sizes() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(prop_oneof![1usize..64, 64usize..9000, 9000usize..400_000], 1..12)
}

#[test]
fn the_whole_shapes_stream_gives_identical_files_and_resumes_after_them() {
    let (start, stream, names) = shapes();
    let tmp = tempfile::tempdir().unwrap();
    let mut w = SegmentWriter::open(tmp.path(), seg_size(), WriterOptions::default()).unwrap();
    write_chunked(&mut w, TLI1, start, &stream, &[128 * 1024 + 5, 3]);
    assert_eq!(w.flush().unwrap(), start + stream.len() as u64);
    assert_files(tmp.path(), &names, &stream, stream.len());
    let end = start + stream.len() as u64;
    let r = w.resume_point().unwrap().unwrap();
    let sysid = u64::from_le_bytes(stream[24..32].try_into().unwrap());
    let want = ResumePoint {
        tli: TLI1,
        start: end,
        segment_start: end,
        valid_end: end,
        system_id: Some(sysid),
    };
    assert_eq!(r, want);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]

    /// Any chunking of any prefix gives the original files, and a zero-padded `.partial`.
    #[test]
    fn chunked_prefixes_give_identical_files(sizes in sizes(), upto in 1usize..(3 << 20)) {
        let (start, stream, names) = shapes();
        let stream = &stream[..3 << 20];
        let tmp = tempfile::tempdir().unwrap();
        let opts = WriterOptions { sync: false, ..WriterOptions::default() };
        let mut w = SegmentWriter::open(tmp.path(), seg_size(), opts).unwrap();
        write_chunked(&mut w, TLI1, start, &stream[..upto], &sizes);
        prop_assert_eq!(w.written(), start + upto as u64);
        prop_assert_eq!(w.flush().unwrap(), start + upto as u64);
        assert_files(tmp.path(), &names, stream, upto);
    }
}

/// How the `.partial` is damaged after the writer stopped.
#[derive(Debug, Clone)]
enum Damage {
    None,
    Truncate(usize),
    Garbage(usize, Vec<u8>),
    /// Zero a page this many pages after the valid end's page.
    ZeroPageAfter(usize),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        Just(Damage::None),
        (0usize..SEG as usize).prop_map(Damage::Truncate),
        (0usize..SEG as usize, prop::collection::vec(any::<u8>(), 1..20_000))
            .prop_map(|(at, g)| Damage::Garbage(at, g)),
        (1usize..4).prop_map(Damage::ZeroPageAfter),
    ]
}

/// Applies `d` to the `.partial` in `dir` (if any); returns how much of it is still
/// the original.
/// Damages the `.partial` and returns where intact WAL ends: the first byte that differs
/// from the original stream (bytes never written are zeros, which may equal the
/// original's: a record whose last bytes are zeros is intact without them).
fn apply_damage(
    dir: &Path,
    d: &Damage,
    recs: &[(Lsn, Lsn)],
    start: Lsn,
    upto: usize,
    stream: &[u8],
) -> Lsn {
    let end = start + upto as u64;
    let seg_start = Lsn(end.0 / SEG * SEG);
    let Some(path) = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".partial"))
    else {
        return end;
    };
    let mut bytes = fs::read(&path).unwrap();
    let intact = match d {
        Damage::None => end,
        Damage::Truncate(at) => {
            bytes.truncate(*at);
            (seg_start + *at as u64).min(end)
        }
        Damage::Garbage(at, g) => {
            let n = g.len().min(bytes.len() - at);
            bytes[*at..at + n].copy_from_slice(&g[..n]);
            (seg_start + *at as u64).min(end)
        }
        Damage::ZeroPageAfter(k) => {
            let valid = expected_valid_end(recs, end);
            let page = (valid.0 - seg_start.0) as usize / 8192 + k;
            if let Some(p) = bytes.get_mut(page * 8192..(page + 1) * 8192) {
                p.fill(0);
            }
            end
        }
    };
    fs::write(&path, &bytes).unwrap();
    let original = &stream[((seg_start.0 - start.0) as usize).min(stream.len())..];
    let same = bytes.iter().zip(original).take_while(|(a, b)| a == b).count();
    intact.max(seg_start + same as u64)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// A writer dropped mid-stream (no flush), its `.partial` then damaged: the resume
    /// point is exactly the end of the last intact record, and streaming the original
    /// bytes again from it (or from its segment start) reproduces the files.
    #[test]
    fn crashes_resume_at_the_last_valid_record(
        upto in 1usize..(2 << 20),
        d in damage(),
        from_segment_start in any::<bool>(),
        sizes in sizes(),
    ) {
        let (start, stream, names) = shapes();
        let stream = &stream[..3 << 20];
        let recs = records(start, stream);
        let tmp = tempfile::tempdir().unwrap();
        let opts = WriterOptions { sync: false, ..WriterOptions::default() };
        let mut w = SegmentWriter::open(tmp.path(), seg_size(), opts).unwrap();
        write_chunked(&mut w, TLI1, start, &stream[..upto], &sizes);
        drop(w);
        let intact = apply_damage(tmp.path(), &d, &recs, start, upto, stream);

        let w = SegmentWriter::open(tmp.path(), seg_size(), opts).unwrap();
        let r = w.resume_point().unwrap().unwrap();
        prop_assert_eq!(r.tli, TLI1);
        prop_assert!(r.valid_end <= intact, "{:?} past the intact {}", r, intact);
        let end = start + upto as u64;
        if end.0 % SEG != 0 {
            prop_assert_eq!(r.valid_end, expected_valid_end(&recs, intact));
        }
        prop_assert!(r.start <= r.valid_end && r.segment_start <= r.start);
        prop_assert_eq!(r.segment_start.0 % SEG, 0);

        let mut w = SegmentWriter::open(tmp.path(), seg_size(), opts).unwrap();
        let from = if from_segment_start { r.segment_start } else { r.start };
        let off = (from.0 - start.0) as usize;
        write_chunked(&mut w, TLI1, from, &stream[off..], &sizes);
        w.flush().unwrap();
        assert_files(tmp.path(), &names, stream, stream.len());
    }
}

/// pg_receivewal across a timeline switch: timeline 1 up to the switch point, the
/// history file, timeline 2 from the switch segment's start (or from the switch point,
/// the segment's start copied from timeline 1): the files are the promoted standby's.
#[test]
fn a_timeline_switch_gives_the_standbys_files() {
    let files = wal_files(&timeline_dir());
    let get = |n: &str| files.iter().find(|(f, _)| f == n).map(|(_, b)| b.clone()).unwrap();
    let start: Lsn = expected_value("timeline.start").parse().unwrap();
    let switch: Lsn = expected_value("timeline.switch").parse().unwrap();
    let switch_off = (switch.0 % SEG) as usize;
    let history = get("00000002.history");
    let (e1, f1, f2) = (
        get("00000001000000000000000E"),
        get("00000001000000000000000F"),
        get("00000002000000000000000F"),
    );
    for from_switch_point in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = SegmentWriter::open(tmp.path(), seg_size(), WriterOptions::default()).unwrap();
        write_chunked(&mut w, TLI1, start, &e1, &[70_000]);
        write_chunked(&mut w, TLI1, start + SEG, &f1[..switch_off], &[70_000]);
        w.flush().unwrap();
        w.write_history(TimeLineId(2), &history).unwrap();
        let seg_f = start + SEG;
        let (from, off) = if from_switch_point { (switch, switch_off) } else { (seg_f, 0) };
        write_chunked(&mut w, TimeLineId(2), from, &f2[off..], &[33_333]);
        w.flush().unwrap();
        let read = |n: &str| fs::read(tmp.path().join(n)).unwrap();
        assert!(read("00000001000000000000000E") == e1);
        assert!(read("00000001000000000000000F.partial")[..switch_off] == f1[..switch_off]);
        assert!(read("00000002000000000000000F") == f2);
        assert_eq!(read("00000002.history"), history);
        let r = w.resume_point().unwrap().unwrap();
        assert_eq!((r.tli, r.start), (TimeLineId(2), seg_f + SEG));
    }
}

/// A `.partial` of the new timeline after a crash resumes on that timeline.
#[test]
fn a_new_timelines_partial_is_validated_across_the_switch() {
    let files = wal_files(&timeline_dir());
    let f2 = files.iter().find(|(f, _)| f == "00000002000000000000000F").unwrap().1.clone();
    let tmp = tempfile::tempdir().unwrap();
    let mut w = SegmentWriter::open(tmp.path(), seg_size(), WriterOptions::default()).unwrap();
    w.write(TimeLineId(2), Lsn(0xF0_0000), &f2[..0x9000]).unwrap();
    drop(w);
    let w = SegmentWriter::open(tmp.path(), seg_size(), WriterOptions::default()).unwrap();
    let r = w.resume_point().unwrap().unwrap();
    let recs = records(Lsn(0xF0_0000), &f2);
    assert_eq!(r.tli, TimeLineId(2));
    assert_eq!(r.valid_end, expected_valid_end(&recs, Lsn(0xF0_9000)));
    assert!(r.valid_end > expected_value("timeline.switch").parse().unwrap());
}
