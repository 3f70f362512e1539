//! Unit tests of the segment writer on small synthetic data.

use super::*;

fn seg() -> WalSegSize {
    WalSegSize::new(1 << 20).unwrap()
}

const TLI: TimeLineId = TimeLineId(1);

#[test]
fn a_new_partial_reads_as_zeros_beyond_what_was_written() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = SegmentWriter::open(
        tmp.path(),
        seg(),
        WriterOptions { sync: false, ..WriterOptions::default() },
    )
    .unwrap();
    w.write(TLI, Lsn(0x70_0000), b"abc").unwrap();
    assert_eq!(w.written(), Lsn(0x70_0003));
    assert_eq!(w.flush().unwrap(), Lsn(0x70_0003));
    assert_eq!(w.written_out(), Lsn(0x70_0003));
    let bytes = std::fs::read(tmp.path().join("000000010000000000000007.partial")).unwrap();
    assert_eq!(bytes.len(), 1 << 20);
    assert_eq!(&bytes[..3], b"abc");
    assert!(bytes[3..].iter().all(|&b| b == 0));
}

#[test]
fn gaps_are_refused_naming_both_positions() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = SegmentWriter::open(tmp.path(), seg(), WriterOptions::default()).unwrap();
    w.write(TLI, Lsn(0x70_0000), b"abc").unwrap();
    let e = w.write(TLI, Lsn(0x70_0004), b"d").unwrap_err();
    assert_eq!(e.to_string(), "got WAL data at 0/700004, expected 0/700003");
}

#[test]
fn a_fresh_stream_must_start_at_a_segment_start_without_earlier_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = SegmentWriter::open(tmp.path(), seg(), WriterOptions::default()).unwrap();
    let e = w.write(TLI, Lsn(0x70_0010), b"abc").unwrap_err();
    assert!(matches!(e, SegmentError::MidSegmentStart { .. }), "{e}");
}

#[test]
fn a_complete_segment_is_renamed_and_flushed() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = SegmentWriter::open(tmp.path(), seg(), WriterOptions::default()).unwrap();
    let data = vec![7u8; (1 << 20) + 10];
    w.write(TLI, Lsn(0x70_0000), &data).unwrap();
    assert!(tmp.path().join("000000010000000000000007").exists());
    assert!(!tmp.path().join("000000010000000000000007.partial").exists());
    assert!(tmp.path().join("000000010000000000000008.partial").exists());
    assert_eq!(w.flushed(), Lsn(0x80_0000));
    assert_eq!(w.flush().unwrap(), Lsn(0x80_000A));
}

#[test]
fn a_timeline_switch_mid_segment_copies_the_segment_start() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = SegmentWriter::open(
        tmp.path(),
        seg(),
        WriterOptions { sync: false, ..WriterOptions::default() },
    )
    .unwrap();
    w.write(TLI, Lsn(0x70_0000), b"old timeline").unwrap();
    w.write(TimeLineId(2), Lsn(0x70_0004), b" new").unwrap();
    w.flush().unwrap();
    let bytes = std::fs::read(tmp.path().join("000000020000000000000007.partial")).unwrap();
    assert_eq!(&bytes[..9], b"old  new\0");
}

#[test]
fn history_files_are_written_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = SegmentWriter::open(tmp.path(), seg(), WriterOptions::default()).unwrap();
    w.write_history(TimeLineId(2), b"1\t0/F047F8\tno recovery target specified\n").unwrap();
    let got = std::fs::read(tmp.path().join("00000002.history")).unwrap();
    assert_eq!(got, b"1\t0/F047F8\tno recovery target specified\n");
    assert!(!tmp.path().join("00000002.history.tmp").exists());
}

#[test]
fn an_empty_directory_has_no_resume_point() {
    let tmp = tempfile::tempdir().unwrap();
    let w = SegmentWriter::open(&tmp.path().join("new"), seg(), WriterOptions::default()).unwrap();
    assert_eq!(w.resume_point().unwrap(), None);
}

#[test]
fn fuzz_resume_survives_odd_inputs() {
    for data in [&b""[..], &[0u8; 100], &[0xFF; 9000]] {
        fuzz_resume(data);
    }
}

#[test]
fn a_complete_segment_written_again_is_overwritten_in_place() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = SegmentWriter::open(
        tmp.path(),
        seg(),
        WriterOptions { sync: false, ..WriterOptions::default() },
    )
    .unwrap();
    w.write(TLI, Lsn(0x70_0000), &vec![1u8; 1 << 20]).unwrap();
    w.write(TLI, Lsn(0x70_0000), b"22").unwrap();
    w.flush().unwrap();
    let bytes = std::fs::read(tmp.path().join("000000010000000000000007")).unwrap();
    assert_eq!(&bytes[..3], b"22\x01");
    assert!(!tmp.path().join("000000010000000000000007.partial").exists());
}

#[test]
fn stale_partials_before_the_last_complete_segment_are_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = SegmentWriter::open(
        tmp.path(),
        seg(),
        WriterOptions { sync: false, ..WriterOptions::default() },
    )
    .unwrap();
    w.write(TLI, Lsn(0x70_0000), b"x").unwrap();
    w.write(TLI, Lsn(0x80_0000), &vec![0u8; 1 << 20]).unwrap();
    let r = w.resume_point().unwrap().unwrap();
    assert_eq!((r.tli, r.start, r.valid_end), (TLI, Lsn(0x90_0000), Lsn(0x90_0000)));
    assert_eq!(r.system_id, None);
}

#[test]
fn a_block_flushed_half_full_is_completed_in_place() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = SegmentWriter::open(tmp.path(), seg(), WriterOptions::default()).unwrap();
    let a = vec![0xAAu8; 5000];
    w.write(TLI, Lsn(0x70_0000), &a).unwrap();
    assert_eq!(w.flush().unwrap(), Lsn(0x70_0000 + 5000));
    w.write(TLI, Lsn(0x70_0000 + 5000), b"more").unwrap();
    assert_eq!(w.flush().unwrap(), Lsn(0x70_0000 + 5004));
    let bytes = std::fs::read(tmp.path().join("000000010000000000000007.partial")).unwrap();
    assert!(bytes[..5000].iter().all(|&b| b == 0xAA));
    assert_eq!(&bytes[5000..5004], b"more");
    assert!(bytes[5004..].iter().all(|&b| b == 0), "zeros after the data");
}

/// A standby flushing after every small commit: staging goes on in the rest of the
/// buffer after each flush (the block being filled carried on), across the buffers' ends
/// and segment ends, and every byte lands where it belongs.
#[test]
fn small_writes_each_flushed_land_exactly_across_buffers_and_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = SegmentWriter::open(tmp.path(), seg(), WriterOptions::default()).unwrap();
    let start = Lsn(0x70_0000);
    let sizes = [96usize, 1, 4095, 4096, 4097, 333, 8192, 77];
    let total = 3 * (1 << 20) + 12_345;
    let data: Vec<u8> = (0..total).map(|i| (i % 251) as u8 ^ 0x5A).collect();
    let mut pos = 0;
    for n in sizes.iter().cycle() {
        let n = (*n).min(total - pos);
        w.write(TLI, start + pos as u64, &data[pos..pos + n]).unwrap();
        pos += n;
        assert_eq!(w.flush().unwrap(), start + pos as u64);
        if pos == total {
            break;
        }
    }
    for (i, segno) in (7..=10).enumerate() {
        let (lo, hi) = (i << 20, ((i + 1) << 20).min(total));
        let name = format!("0000000100000000000000{segno:02X}");
        let path = if hi - lo == 1 << 20 {
            tmp.path().join(&name)
        } else {
            tmp.path().join(format!("{name}.partial"))
        };
        let got = std::fs::read(&path).unwrap();
        assert!(got[..hi - lo] == data[lo..hi], "{name} differs");
        assert!(got[hi - lo..].iter().all(|&b| b == 0), "{name} not zero after the data");
    }
}

#[test]
fn dropping_the_writer_writes_what_was_staged() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = SegmentWriter::open(
        tmp.path(),
        seg(),
        WriterOptions { sync: false, ..WriterOptions::default() },
    )
    .unwrap();
    w.write(TLI, Lsn(0x70_0000), b"staged").unwrap();
    drop(w);
    let bytes = std::fs::read(tmp.path().join("000000010000000000000007.partial")).unwrap();
    assert_eq!(&bytes[..7], b"staged\0");
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]

        /// Any chunking with flushes anywhere, over more data than the staging buffers
        /// hold at once and across a segment end: the files hold exactly the bytes
        /// written, zeros after them, and every flush reports the end of the data.
        #[test]
        fn staged_writes_and_flushes_land_exactly(
            chunks in prop::collection::vec(
                (prop_oneof![1usize..9_000, 1usize..300_000], any::<bool>()),
                1..60,
            ),
            seed in any::<u8>(),
        ) {
            let seg = WalSegSize::new(4 << 20).unwrap();
            let tmp = tempfile::tempdir().unwrap();
            let mut w = SegmentWriter::open(tmp.path(), seg, WriterOptions::default()).unwrap();
            let start = Lsn(8 << 20);
            let total: usize = chunks.iter().map(|c| c.0).sum();
            let data: Vec<u8> = (0..total).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect();
            let mut pos = 0;
            for (n, flush) in chunks {
                w.write(TLI, start + pos as u64, &data[pos..pos + n]).unwrap();
                pos += n;
                if flush {
                    prop_assert_eq!(w.flush().unwrap(), start + pos as u64);
                    prop_assert_eq!(w.written_out(), start + pos as u64);
                }
            }
            prop_assert_eq!(w.flush().unwrap(), start + total as u64);
            for (i, segno) in (2..).take(total.div_ceil(4 << 20)).enumerate() {
                let name = format!("0000000100000000000000{segno:02X}");
                let (lo, hi) = (i * (4 << 20), ((i + 1) * (4 << 20)).min(total));
                let path = if hi - lo == 4 << 20 {
                    tmp.path().join(&name)
                } else {
                    tmp.path().join(format!("{name}.partial"))
                };
                let got = std::fs::read(&path).unwrap();
                prop_assert_eq!(got.len(), 4 << 20);
                prop_assert!(got[..hi - lo] == data[lo..hi], "{} differs", name);
                prop_assert!(got[hi - lo..].iter().all(|&b| b == 0), "{} not zero after", name);
            }
        }
    }

    fn real_head() -> Vec<u8> {
        let files = walstream_testdata::wal_files(&walstream_testdata::shapes_dir());
        files[0].1[..64 * 1024].to_vec()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn resume_never_panics_on_arbitrary_bytes(
            data in prop::collection::vec(any::<u8>(), 0..20_000),
        ) {
            fuzz_resume(&data);
        }

        #[test]
        fn resume_never_panics_on_mutated_wal(
            cut in 0usize..64 * 1024,
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        ) {
            let mut data = real_head();
            for (i, b) in flips {
                let at = i.index(data.len());
                data[at] ^= b;
            }
            data.truncate(cut);
            fuzz_resume(&data);
        }
    }
}
