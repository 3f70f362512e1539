//! Fuzz entry points for the WAL decoder: called by the cargo-fuzz targets in `fuzz/`
//! and by the corpus replay test.

use bytes::Bytes;

use super::decoder::WalDecoder;
use crate::lsn::{Lsn, WalSegSize};

/// The LSN fuzz input starts at: the start of a 1 MB segment (the committed seeds are the
/// head of testdata's segment `000000010000000000000007`).
pub const FUZZ_START: Lsn = Lsn(0x70_0000);

/// Decodes `data[1..]` as 1 MB-segment WAL beginning at [`FUZZ_START`], looking for the
/// first record as `XLogFindNextRecord` does, once whole and once fed in chunks whose
/// size comes from `data[0]`. Never panics on any input; panics if the two chunkings
/// disagree (the decoder's output must not depend on how bytes arrive).
pub fn fuzz_decoder(data: &[u8]) {
    let Some((&chunk, wal)) = data.split_first() else { return };
    let seg = WalSegSize::new(1 << 20).expect("1 MB is a valid segment size");
    let whole = run(seg, &[Bytes::copy_from_slice(wal)]);
    let step = usize::from(chunk) + 1;
    let pieces: Vec<Bytes> = wal.chunks(step).map(Bytes::copy_from_slice).collect();
    let chunked = run(seg, &pieces);
    assert_eq!(whole, chunked, "decoding depends on chunking ({step}-byte pieces)");
}

type Outcome = (Vec<(Lsn, u32, u8)>, Option<String>);

fn run(seg: WalSegSize, pieces: &[Bytes]) -> Outcome {
    let mut d = WalDecoder::find_next(FUZZ_START, seg);
    let mut records = Vec::new();
    let mut fed = Lsn(FUZZ_START.segment_start(seg).0);
    let mut pieces = pieces.iter();
    loop {
        match d.poll() {
            Ok(Some(r)) => records.push((r.lsn, r.header.tot_len, r.header.rmid)),
            Ok(None) => {
                // Feed only from where the decoder asks; input before that is skipped.
                let Some(p) = pieces.next() else { return (records, None) };
                let want = d.next_feed_lsn();
                let end = fed + p.len() as u64;
                if end > want {
                    let skip = (want.0.saturating_sub(fed.0)) as usize;
                    d.feed(p.slice(skip.min(p.len())..));
                }
                fed = end;
            }
            Err(e) => return (records, Some(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_wal_decodes_the_same_in_any_chunking() {
        let seg = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../testdata/wal/shapes/000000010000000000000007"),
        )
        .unwrap();
        for chunk in [0u8, 7, 200, 255] {
            let mut input = vec![chunk];
            input.extend_from_slice(&seg[..64 * 1024]);
            fuzz_decoder(&input);
        }
        let (records, err) =
            run(WalSegSize::new(1 << 20).unwrap(), &[Bytes::copy_from_slice(&seg)]);
        assert!(records.len() > 100);
        assert!(err.is_none(), "a whole real segment decodes without error: {err:?}");
    }
}
