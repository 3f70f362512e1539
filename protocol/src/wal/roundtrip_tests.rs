//! Property tests: the decoder reads back exactly what the encoder wrote, in any chunking.

use bytes::Bytes;
use proptest::prelude::*;

use super::assemble::normalize_blocks;
use super::*;
use crate::lsn::{Lsn, TimeLineId, WalSegSize, Xid};

pub(crate) fn seg1m() -> WalSegSize {
    WalSegSize::new(1 << 20).unwrap()
}

pub(crate) fn config() -> EncoderConfig {
    EncoderConfig {
        system_id: 7_412_345_678_901_234_567,
        timeline: TimeLineId(1),
        seg_size: seg1m(),
    }
}

/// One thing to append.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    Record(RecordSpec),
    Switch,
}

fn payload(max: usize) -> impl Strategy<Value = Bytes> {
    (0..=max, any::<u8>()).prop_map(|(n, seed)| {
        Bytes::from(
            (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect::<Vec<_>>(),
        )
    })
}

fn image() -> impl Strategy<Value = BlockImage> {
    prop_oneof![
        payload(0).prop_map(|_| BlockImage {
            bimg_info: record::BKPIMAGE_APPLY,
            hole_offset: 0,
            hole_length: 0,
            data: Bytes::from(vec![0x5a; 8192]),
        }),
        (1u16..4000, 1u16..4000).prop_map(|(off, hole)| BlockImage {
            bimg_info: record::BKPIMAGE_HAS_HOLE,
            hole_offset: off,
            hole_length: hole,
            data: Bytes::from(vec![0xa5; 8192 - usize::from(hole)]),
        }),
        (1usize..3000, any::<bool>(), 1u16..100).prop_map(|(len, holed, hole)| BlockImage {
            bimg_info: record::BKPIMAGE_COMPRESS_LZ4
                | if holed { record::BKPIMAGE_HAS_HOLE } else { 0 },
            hole_offset: if holed { 100 } else { 0 },
            hole_length: if holed { hole } else { 0 },
            data: Bytes::from(vec![0x33; len]),
        }),
    ]
}

fn blocks() -> impl Strategy<Value = Vec<BlockRef>> {
    let block = (
        0u8..4,
        any::<bool>(),
        0u32..3,
        any::<u32>(),
        proptest::option::weighted(0.2, image()),
        payload(300),
    );
    proptest::collection::vec(block, 0..4).prop_map(|bs| {
        let mut id = 0u8;
        bs.into_iter()
            .map(|(fork, init, rel, blkno, image, data)| {
                id += 1 + (blkno % 5) as u8;
                BlockRef {
                    id: id.min(record::XLR_MAX_BLOCK_ID),
                    fork_flags: fork | if init { record::BKPBLOCK_WILL_INIT } else { 0 },
                    rnode: RelFileNode { spc_node: 1663, db_node: 5, rel_node: 16384 + rel },
                    blkno,
                    image,
                    data,
                }
            })
            .filter(|b| b.id < record::XLR_MAX_BLOCK_ID)
            .collect()
    })
}

pub(crate) fn spec(max_main: usize) -> impl Strategy<Value = RecordSpec> {
    (
        0u8..16,
        any::<u32>(),
        blocks(),
        proptest::option::of(any::<u16>()),
        proptest::option::of(any::<u32>()),
        prop_oneof![4 => payload(300), 1 => payload(max_main)],
    )
        .prop_map(|(info, xid, blocks, origin, top, main_data)| RecordSpec {
            rmid: 128,
            info: info << 4,
            xid: Xid(xid),
            blocks,
            origin,
            toplevel_xid: top.map(Xid),
            main_data,
        })
}

pub(crate) fn ops(max_main: usize, n: usize) -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(
        prop_oneof![12 => spec(max_main).prop_map(Op::Record), 1 => Just(Op::Switch)],
        1..n,
    )
}

/// Encodes `ops` from `start`; returns the bytes (from `start`'s segment start, zeros
/// before `start`) and the records the decoder must return.
pub(crate) fn encode(ops: &[Op], start: Lsn) -> (Vec<u8>, Vec<DecodedRecord>, Lsn) {
    let mut enc = WalEncoder::new(config(), start, Lsn(start.0 - 8)).unwrap();
    let mut expected = Vec::new();
    for op in ops {
        let (a, spec) = match op {
            Op::Record(spec) => (enc.append(spec).unwrap(), spec.clone()),
            Op::Switch => match enc.switch(Xid(0)).unwrap() {
                Some(a) => (a, RecordSpec { rmid: 0, info: 0x40, ..Default::default() }),
                None => continue,
            },
        };
        expected.push(DecodedRecord {
            lsn: a.lsn,
            end_lsn: a.end_lsn,
            header: a.header,
            blocks: normalize_blocks(&spec.blocks).unwrap(),
            origin: spec.origin,
            toplevel_xid: spec.toplevel_xid,
            main_data: spec.main_data,
        });
    }
    let seg_start = start.segment_start(seg1m());
    let mut data = vec![0u8; (start - seg_start) as usize];
    let (from, bytes) = enc.take();
    assert_eq!(from, start);
    data.extend_from_slice(&bytes);
    (data, expected, enc.position())
}

/// Feeds `data` in pieces of the given sizes (cycled), polling after each.
pub(crate) fn decode_chunked(
    mut d: WalDecoder,
    data: &[u8],
    sizes: &[usize],
) -> (Vec<DecodedRecord>, Option<WalError>, WalDecoder) {
    let (records, err) =
        decoder::decode_in_pieces(&mut d, &Bytes::copy_from_slice(data), sizes, false);
    (records, err, d)
}

const START: Lsn = Lsn(0x0010_0000);

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn reads_back_what_was_written(
        ops in ops(3 << 20, 12),
        sizes in proptest::collection::vec(1usize..200_000, 1..8),
    ) {
        let (data, expected, end) = encode(&ops, START);
        let (got, err, d) = decode_chunked(WalDecoder::new(START, seg1m()), &data, &sizes);
        prop_assert_eq!(err, None);
        prop_assert_eq!(&got, &expected);
        prop_assert_eq!(d.next_record_lsn(), end);
        if !expected.is_empty() {
            prop_assert_eq!(d.system_id(), Some(config().system_id));
        }
    }

    #[test]
    fn reads_back_in_small_pieces(
        ops in ops(20_000, 16),
        sizes in proptest::collection::vec(1usize..40, 1..8),
    ) {
        let (data, expected, _) = encode(&ops, START);
        let (got, err, _) = decode_chunked(WalDecoder::new(START, seg1m()), &data, &sizes);
        prop_assert_eq!(err, None);
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn find_next_returns_first_record_at_or_after(
        ops in ops(40_000, 20),
        frac in 0.0f64..1.0,
    ) {
        let (data, expected, end) = encode(&ops, START);
        let target = Lsn(START.0 + ((end.0 - START.0) as f64 * frac) as u64);
        // A target on a page zeroed after XLOG_SWITCH has no page header: PostgreSQL fails.
        let page = target.page_start();
        for r in expected.iter().filter(|r| r.header.rmid == 0) {
            let zeroed = Lsn((r.end_lsn.0 + 8191) & !8191);
            prop_assume!(page < zeroed || page >= r.end_lsn.segment_start(seg1m()) + (1 << 20));
        }
        let want: Vec<_> = expected.iter().filter(|r| r.lsn >= target).cloned().collect();
        let from = (target.segment_start(seg1m()) - START) as usize;
        let d = WalDecoder::find_next(target, seg1m());
        let (got, err, _) = decode_chunked(d, data.get(from..).unwrap_or(&[]), &[7919]);
        prop_assert_eq!(err, None);
        prop_assert_eq!(got, want);
    }

    #[test]
    fn never_panics_on_arbitrary_bytes(
        data in proptest::collection::vec(any::<u8>(), 0..20_000),
        sizes in proptest::collection::vec(1usize..5000, 1..4),
        find in any::<bool>(),
    ) {
        let d = if find {
            WalDecoder::find_next(Lsn(0x0010_0000), seg1m())
        } else {
            WalDecoder::new(START, seg1m())
        };
        let _ = decode_chunked(d, &data, &sizes);
    }

    #[test]
    fn never_panics_on_mangled_wal(
        ops in ops(20_000, 8),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
        sizes in proptest::collection::vec(1usize..9000, 1..4),
    ) {
        let (mut data, expected, _) = encode(&ops, START);
        prop_assume!(!data.is_empty());
        for (i, x) in &flips {
            let at = i.index(data.len());
            data[at] ^= x;
        }
        let (got, _, _) = decode_chunked(WalDecoder::new(START, seg1m()), &data, &sizes);
        prop_assert!(got.len() <= expected.len());
    }
}

#[test]
fn one_byte_feeds() {
    let big =
        RecordSpec { rmid: 128, main_data: Bytes::from(vec![7u8; 20_000]), ..Default::default() };
    let small =
        RecordSpec { rmid: 128, main_data: Bytes::from_static(b"hello"), ..Default::default() };
    let ops = vec![Op::Record(small.clone()), Op::Record(big), Op::Switch, Op::Record(small)];
    let (data, expected, _) = encode(&ops, START);
    let (got, err, _) = decode_chunked(WalDecoder::new(START, seg1m()), &data, &[1]);
    assert_eq!(err, None);
    assert_eq!(got, expected);
}
