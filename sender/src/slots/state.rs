//! The on-disk state of one persistent slot (`pg_replslot/<name>/state`): a small
//! versioned text format ending in a CRC-32C, and its crash-safe writing.
//!
//! ```text
//! walstream physical slot 1
//! name <name>
//! restart <X/X> <tli>        (or: restart none)
//! crc <8 hex digits>         (CRC-32C of every byte before this line)
//! ```

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use walstream_protocol::{Lsn, TimeLineId};

/// The first line of every state file; the number is the format version.
const MAGIC_LINE: &str = "walstream physical slot 1";

/// What a persistent slot keeps across restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotState {
    /// The slot name (valid per `ReplicationSlotValidateName`).
    pub name: String,
    /// The oldest WAL the slot needs, with its timeline.
    pub restart: Option<(Lsn, TimeLineId)>,
}

/// Why a state file's bytes are not a valid state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateDecodeError {
    /// The CRC line is missing or malformed, or the file was cut short.
    #[error("file is truncated or has no checksum")]
    Truncated,
    /// The CRC does not match the contents.
    #[error("checksum mismatch: is {found:08X}, should be {computed:08X}")]
    Checksum {
        /// The CRC stored in the file.
        found: u32,
        /// The CRC of the contents.
        computed: u32,
    },
    /// The first line is not the format this version writes.
    #[error("unsupported format: {0:?}")]
    Version(String),
    /// A line is not what the format expects there.
    #[error("malformed line: {0:?}")]
    Malformed(String),
}

impl SlotState {
    /// The file contents for this state.
    pub fn encode(&self) -> Vec<u8> {
        let restart = match self.restart {
            Some((lsn, tli)) => format!("{lsn} {}", tli.0),
            None => "none".to_string(),
        };
        let body = format!("{MAGIC_LINE}\nname {}\nrestart {restart}\n", self.name);
        let crc = crc32c::crc32c(body.as_bytes());
        format!("{body}crc {crc:08X}\n").into_bytes()
    }

    /// Parses state file contents.
    ///
    /// # Errors
    /// A [`StateDecodeError`] for anything [`SlotState::encode`] would not have written.
    pub fn decode(data: &[u8]) -> Result<SlotState, StateDecodeError> {
        let body_len = crc_line_start(data).ok_or(StateDecodeError::Truncated)?;
        let (body, crc_line) = data.split_at(body_len);
        let found = parse_crc_line(crc_line).ok_or(StateDecodeError::Truncated)?;
        let computed = crc32c::crc32c(body);
        if found != computed {
            return Err(StateDecodeError::Checksum { found, computed });
        }
        let text = std::str::from_utf8(body)
            .map_err(|_| StateDecodeError::Malformed("not UTF-8".to_string()))?;
        let mut lines = text.lines();
        let first = lines.next().unwrap_or_default();
        if first != MAGIC_LINE {
            return Err(StateDecodeError::Version(first.to_string()));
        }
        let name = field(lines.next(), "name ")?;
        if super::validate_name(name).is_err() {
            return Err(StateDecodeError::Malformed(format!("name {name}")));
        }
        let restart = parse_restart(field(lines.next(), "restart ")?)?;
        if let Some(extra) = lines.next() {
            return Err(StateDecodeError::Malformed(extra.to_string()));
        }
        let state = SlotState { name: name.to_string(), restart };
        // One spelling per state (no leading zeros, no `\r`): what encode writes.
        if state.encode() != data {
            return Err(StateDecodeError::Malformed("not in canonical form".to_string()));
        }
        Ok(state)
    }
}

/// Where the last line (`crc ...\n`) starts: after the second-to-last newline.
fn crc_line_start(data: &[u8]) -> Option<usize> {
    let without_last = data.strip_suffix(b"\n")?;
    let nl = without_last.iter().rposition(|&b| b == b'\n')?;
    Some(nl + 1)
}

fn parse_crc_line(line: &[u8]) -> Option<u32> {
    let hex = line.strip_prefix(b"crc ")?.strip_suffix(b"\n")?;
    if hex.len() != 8 {
        return None;
    }
    u32::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
}

fn field<'a>(line: Option<&'a str>, prefix: &str) -> Result<&'a str, StateDecodeError> {
    let line = line.ok_or(StateDecodeError::Truncated)?;
    line.strip_prefix(prefix).ok_or_else(|| StateDecodeError::Malformed(line.to_string()))
}

fn parse_restart(value: &str) -> Result<Option<(Lsn, TimeLineId)>, StateDecodeError> {
    if value == "none" {
        return Ok(None);
    }
    let bad = || StateDecodeError::Malformed(format!("restart {value}"));
    let (lsn, tli) = value.split_once(' ').ok_or_else(bad)?;
    let lsn: Lsn = lsn.parse().map_err(|_| bad())?;
    let tli: u32 = tli.parse().map_err(|_| bad())?;
    if tli == 0 || !lsn.is_valid() {
        return Err(bad());
    }
    Ok(Some((lsn, TimeLineId(tli))))
}

/// Parses arbitrary bytes as a slot state file, for a fuzz target: must never panic,
/// and whatever parses must encode back to the same bytes.
pub fn fuzz_slot_state(data: &[u8]) {
    if let Ok(state) = SlotState::decode(data) {
        assert_eq!(state.encode(), data, "a decoded state re-encodes to its bytes");
    }
}

/// The directory of slot `name` under `root`.
pub(super) fn slot_dir(root: &Path, name: &str) -> PathBuf {
    root.join(name)
}

/// Writes `dir/state` crash-safely: `state.tmp`, fsync, rename, fsync the directory
/// (`slot.c: SaveSlotToPath`).
pub(super) fn write_state(dir: &Path, state: &SlotState) -> std::io::Result<()> {
    let tmp = dir.join("state.tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(&state.encode())?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, dir.join("state"))?;
    fsync_dir(dir)
}

/// Creates the directory of a new slot with its first state, crash-safely: everything is
/// made in `<name>.tmp` and renamed into place (`slot.c: CreateSlotOnDisk`).
pub(super) fn create_on_disk(root: &Path, state: &SlotState) -> std::io::Result<()> {
    let tmp = root.join(format!("{}.tmp", state.name));
    if tmp.exists() {
        fs::remove_dir_all(&tmp)?;
    }
    fs::create_dir(&tmp)?;
    write_state(&tmp, state)?;
    fs::rename(&tmp, slot_dir(root, &state.name))?;
    fsync_dir(root)
}

/// Removes a slot's directory: renamed to `<name>.tmp` first so that a crash midway never
/// leaves a half-removed slot that looks valid (`slot.c: ReplicationSlotDropPtr`).
pub(super) fn remove_on_disk(root: &Path, name: &str) -> std::io::Result<()> {
    let tmp = root.join(format!("{name}.tmp"));
    fs::rename(slot_dir(root, name), &tmp)?;
    fsync_dir(root)?;
    fs::remove_dir_all(&tmp)
}

/// fsyncs a directory so that renames in it are durable.
pub(super) fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn encodes_readable_text() {
        let s = SlotState {
            name: "standby_1".into(),
            restart: Some((Lsn(0x1_0000_0028), TimeLineId(3))),
        };
        let text = String::from_utf8(s.encode()).unwrap();
        assert!(text.starts_with("walstream physical slot 1\nname standby_1\nrestart 1/28 3\ncrc "));
        assert_eq!(SlotState::decode(text.as_bytes()), Ok(s));
    }

    #[test]
    fn detects_corruption_and_truncation() {
        let s = SlotState { name: "a".into(), restart: None };
        let bytes = s.encode();
        let mut flipped = bytes.clone();
        flipped[27] ^= 1;
        assert!(matches!(SlotState::decode(&flipped), Err(StateDecodeError::Checksum { .. })));
        for cut in 0..bytes.len() {
            assert!(SlotState::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert_eq!(SlotState::decode(b""), Err(StateDecodeError::Truncated));
    }

    fn states() -> impl Strategy<Value = SlotState> {
        let restart =
            proptest::option::of((1u64.., 1u32..).prop_map(|(l, t)| (Lsn(l), TimeLineId(t))));
        ("[a-z0-9_]{1,63}", restart).prop_map(|(name, restart)| SlotState { name, restart })
    }

    proptest! {
        #[test]
        fn round_trip(s in states()) {
            prop_assert_eq!(SlotState::decode(&s.encode()), Ok(s));
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            fuzz_slot_state(&data);
        }

        #[test]
        fn mutated_files_never_panic(s in states(), at in any::<usize>(), byte in any::<u8>()) {
            let mut data = s.encode();
            let i = at % data.len();
            data[i] = byte;
            fuzz_slot_state(&data);
        }
    }
}
