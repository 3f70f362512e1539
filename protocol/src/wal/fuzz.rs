//! Fuzz entry points for the WAL decoder: called by the cargo-fuzz targets in `fuzz/`
//! and by the corpus replay test.

use bytes::Bytes;

use super::decoder::{decode_in_pieces, WalDecoder};
use super::{DecodedRecord, WalError};
use crate::lsn::{Lsn, WalSegSize};

/// The LSN fuzz input starts at: the start of a 1 MB segment (the committed seeds are the
/// head of testdata's segment `000000010000000000000007`).
pub const FUZZ_START: Lsn = Lsn(0x70_0000);

/// Decodes `data[1..]` as 1 MB-segment WAL beginning at [`FUZZ_START`], looking for the
/// first record as `XLogFindNextRecord` does: once whole with `poll`, once fed in pieces
/// whose size comes from `data[0]` with `poll_ref`. Never panics on any input; panics if
/// the two disagree (the result must depend neither on how bytes arrive nor on the path).
pub fn fuzz_decoder(data: &[u8]) {
    let Some((&chunk, wal)) = data.split_first() else { return };
    let wal = Bytes::copy_from_slice(wal);
    let step = usize::from(chunk) + 1;
    let whole = run(&wal, wal.len(), false);
    let chunked = run(&wal, step, true);
    assert_eq!(whole, chunked, "decoding depends on chunking ({step}-byte pieces) or path");
}

fn run(wal: &Bytes, piece: usize, borrowed: bool) -> (Vec<DecodedRecord>, Option<WalError>) {
    let seg = WalSegSize::new(1 << 20).expect("1 MB is a valid segment size");
    let mut d = WalDecoder::find_next(FUZZ_START, seg);
    decode_in_pieces(&mut d, wal, &[piece], borrowed)
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
        let (records, err) = run(&Bytes::from(seg), 1 << 20, false);
        assert!(records.len() > 100);
        assert!(err.is_none(), "a whole real segment decodes without error: {err:?}");
    }
}
