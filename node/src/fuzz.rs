//! Fuzz entry points for the node's decoders of file and WAL input, used by the cargo-fuzz
//! targets in `fuzz/` and replayed by `tests/fuzz_corpus.rs`.
//!
//! Each decodes arbitrary bytes and, for what it accepts, checks that encoding gives back
//! what decoding read: a decoder that accepts garbage or loses data fails here.

use crate::checkpointer::CheckpointState;
use crate::engine::{Change, Image};

pub use crate::conf::fuzz_conf;
pub use crate::xlog::control::fuzz_control;
pub use crate::xlog::records::fuzz_record;

/// A row-change record: `data[0]` is the info byte, the rest the payload. Compared as
/// bytes: a float8 NaN in a key decodes again to a NaN, which `==` never equals.
pub fn fuzz_change(data: &[u8]) {
    let Some((&info, payload)) = data.split_first() else { return };
    if let Ok(change) = Change::decode(info, payload) {
        let (info2, payload2) = change.encode();
        let again = Change::decode(info2, &payload2).expect("an encoded change decodes");
        assert_eq!(again.encode(), (info2, payload2));
    }
}

/// A checkpoint image of the tables.
pub fn fuzz_image(data: &[u8]) {
    if let Ok(image) = Image::decode(data) {
        let again = Image::decode(&image.encode()).expect("an encoded image decodes");
        assert_eq!(again.encode(), image.encode());
    }
}

/// The checkpoint state file (`base/walstream_state`).
pub fn fuzz_checkpoint_state(data: &[u8]) {
    if let Ok(state) = CheckpointState::decode(data) {
        let again = CheckpointState::decode(&state.encode()).expect("an encoded state decodes");
        assert_eq!(again.encode(), state.encode());
    }
}
