//! Property tests: the borrowed path (`poll_ref`) and the owned path (`poll`), with the
//! decoder's fast path, return the same records and error, and stop at the same place, as
//! the general path alone, on encoder-made WAL in any chunking, intact or altered.

use bytes::Bytes;
use proptest::prelude::*;

use super::roundtrip_tests::{encode, ops, seg1m};
use super::*;
use crate::lsn::Lsn;

/// What a decoder returned: records, the error if any, and where it stopped.
type Outcome = (Vec<DecodedRecord>, Option<WalError>, Lsn);

/// Feeds `data` in pieces of the given sizes (cycled); `borrowed` polls with `poll_ref`.
fn run(mut d: WalDecoder, data: &Bytes, sizes: &[usize], borrowed: bool) -> Outcome {
    let (records, err) = decoder::decode_in_pieces(&mut d, data, sizes, borrowed);
    (records, err, d.next_record_lsn())
}

/// Decodes `data` three ways and checks they agree: owned and borrowed in pieces of
/// `sizes`, and owned in 7-byte pieces, where no record lies in one piece, so that only
/// the general path runs (the reference for the fast path).
fn check(start: Lsn, data: &[u8], sizes: &[usize]) -> Result<Outcome, TestCaseError> {
    let data = Bytes::copy_from_slice(data);
    let general = run(WalDecoder::new(start, seg1m()), &data, &[7], false);
    let owned = run(WalDecoder::new(start, seg1m()), &data, sizes, false);
    let borrowed = run(WalDecoder::new(start, seg1m()), &data, sizes, true);
    prop_assert_eq!(&owned, &general);
    prop_assert_eq!(&borrowed, &general);
    Ok(general)
}

const START: Lsn = Lsn(0x0010_0000);

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn poll_ref_agrees_with_poll(
        ops in ops(40_000, 24),
        sizes in proptest::collection::vec(1usize..100_000, 1..8),
    ) {
        let (data, expected, _) = encode(&ops, START);
        let got = check(START, &data, &sizes)?;
        prop_assert_eq!(&got.0, &expected);
    }

    #[test]
    fn poll_ref_agrees_with_poll_on_a_flipped_byte(
        ops in ops(20_000, 16),
        sizes in proptest::collection::vec(1usize..100_000, 1..4),
        at in any::<prop::sample::Index>(),
        xor in 1u8..=255,
    ) {
        let (mut data, _, _) = encode(&ops, START);
        let from = (START - START.segment_start(seg1m())) as usize;
        if data.len() > from {
            let i = from + at.index(data.len() - from);
            data[i] ^= xor;
        }
        check(START, &data, &sizes)?;
    }

    #[test]
    fn poll_ref_agrees_with_poll_on_a_changed_header_with_its_crc(
        ops in ops(2_000, 24),
        which in any::<prop::sample::Index>(),
        at in 4usize..20,
        xor in 1u8..=255,
    ) {
        let (mut data, expected, _) = encode(&ops, START);
        let base = START.segment_start(seg1m());
        // A record inside one page: change a header byte after xl_tot_len and fix the CRC,
        // so that only the header checks (prev link, rmgr id) can refuse it.
        let inside: Vec<_> = expected
            .iter()
            .filter(|r| r.end_lsn.0 <= r.lsn.page_start().0 + 8192)
            .collect();
        if !inside.is_empty() {
            let r = inside[which.index(inside.len())];
            let from = (r.lsn - base) as usize;
            let rec = &mut data[from..from + r.header.tot_len as usize];
            rec[at] ^= xor;
            let crc = crc::whole_record_crc(rec);
            rec[20..24].copy_from_slice(&crc.to_le_bytes());
        }
        check(START, &data, &[1 << 20])?;
    }
}
