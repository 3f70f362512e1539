//! `poll_ref` (borrowed) and `poll` (owned) agree on real PostgreSQL 15 WAL from
//! `testdata/`, in any chunking, with the general path alone: fed in 7-byte pieces, no
//! record lies in one piece, so the decoder's fast path never runs.

use bytes::Bytes;
use proptest::prelude::*;
use walstream_protocol::wal::decoder::decode_in_pieces;
use walstream_protocol::wal::{DecodedRecord, WalDecoder, WalError};
use walstream_protocol::{Lsn, WalSegSize};
use walstream_testdata as td;

fn seg1m() -> WalSegSize {
    WalSegSize::new(1 << 20).unwrap()
}

/// The timeline-1 segments of the shapes WAL, concatenated, with the LSN of the first byte.
fn shapes() -> &'static (Lsn, Bytes) {
    static WAL: std::sync::OnceLock<(Lsn, Bytes)> = std::sync::OnceLock::new();
    WAL.get_or_init(|| {
        let files: Vec<_> = td::wal_files(&td::shapes_dir())
            .into_iter()
            .filter(|(n, _)| n.len() == 24 && n.starts_with("00000001"))
            .collect();
        let (_, first) =
            walstream_protocol::lsn::parse_segment_file_name(&files[0].0, seg1m()).unwrap();
        let all: Vec<u8> = files.into_iter().flat_map(|(_, b)| b).collect();
        (first.start_lsn(seg1m()), Bytes::from(all))
    })
}

/// `find_next(start)` over the shapes WAL in pieces of `sizes` (cycled).
fn run(start: Lsn, sizes: &[usize], borrowed: bool) -> (Vec<DecodedRecord>, Option<WalError>) {
    let (base, data) = shapes();
    let mut d = WalDecoder::find_next(start, seg1m());
    let from = (d.next_feed_lsn() - *base) as usize;
    decode_in_pieces(&mut d, &data.slice(from..), sizes, borrowed)
}

#[test]
fn agree_on_the_whole_shapes_wal() {
    let start = shapes().0;
    let general = run(start, &[7], false);
    assert!(general.0.len() > 1000, "{} records", general.0.len());
    assert_eq!(general, run(start, &[65536], false));
    assert_eq!(general, run(start, &[65536], true));
    assert_eq!(general, run(start, &[262_144, 8192, 13], true));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn agree_from_anywhere_in_any_chunking(
        from in 0u64..(7 << 20),
        sizes in proptest::collection::vec(1usize..300_000, 1..6),
    ) {
        let start = shapes().0 + from;
        let owned = run(start, &sizes, false);
        prop_assert_eq!(&owned, &run(start, &sizes, true));
        prop_assert_eq!(&owned, &run(start, &[7], false));
    }
}
