//! The CopyData messages of a PostgreSQL 15 base backup (`basebackup_copy.c`): each
//! starts with a byte saying what it carries.

use bytes::{BufMut, Bytes, BytesMut};

/// One CopyData message of `BASE_BACKUP`'s COPY OUT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupMessage {
    /// `n`: a new archive begins (`base.tar`, or `<oid>.tar` for a tablespace at
    /// `location`; empty for the main data directory).
    NewArchive {
        /// The archive's name.
        name: String,
        /// The tablespace's location.
        location: String,
    },
    /// `d`: archive (or, after `m`, manifest) bytes.
    Data(Bytes),
    /// `p`: bytes of the backup done so far (`PROGRESS`).
    Progress(u64),
    /// `m`: the backup manifest follows, as `d` messages.
    Manifest,
}

/// Why a CopyData message is not a base backup message (pg_basebackup's texts).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackupMessageError {
    /// An empty message.
    #[error("empty COPY message")]
    Empty,
    /// A type byte pg_basebackup does not know.
    #[error("unexpected payload data")]
    UnknownType(u8),
    /// A message of the right type and the wrong length or contents.
    #[error("malformed {0} message")]
    Malformed(&'static str),
}

fn cstring(b: &[u8]) -> Option<(String, &[u8])> {
    let nul = b.iter().position(|&c| c == 0)?;
    let s = std::str::from_utf8(&b[..nul]).ok()?.to_string();
    Some((s, &b[nul + 1..]))
}

impl BackupMessage {
    /// Parses one CopyData payload.
    ///
    /// # Errors
    /// [`BackupMessageError`] for an empty, unknown or malformed message.
    pub fn parse(payload: &Bytes) -> Result<BackupMessage, BackupMessageError> {
        let (&kind, body) = payload.split_first().ok_or(BackupMessageError::Empty)?;
        match kind {
            b'n' => {
                let bad = BackupMessageError::Malformed("new archive");
                let (name, rest) = cstring(body).ok_or(bad.clone())?;
                let (location, rest) = cstring(rest).ok_or(bad.clone())?;
                if !rest.is_empty() {
                    return Err(bad);
                }
                Ok(BackupMessage::NewArchive { name, location })
            }
            b'd' => Ok(BackupMessage::Data(payload.slice(1..))),
            b'p' => {
                let bytes: [u8; 8] =
                    body.try_into().map_err(|_| BackupMessageError::Malformed("progress"))?;
                Ok(BackupMessage::Progress(u64::from_be_bytes(bytes)))
            }
            b'm' if body.is_empty() => Ok(BackupMessage::Manifest),
            b'm' => Err(BackupMessageError::Malformed("manifest")),
            other => Err(BackupMessageError::UnknownType(other)),
        }
    }

    /// The CopyData payload of this message, as the server sends it.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        match self {
            BackupMessage::NewArchive { name, location } => {
                b.put_u8(b'n');
                b.put_slice(name.as_bytes());
                b.put_u8(0);
                b.put_slice(location.as_bytes());
                b.put_u8(0);
            }
            BackupMessage::Data(d) => {
                b.put_u8(b'd');
                b.put_slice(d);
            }
            BackupMessage::Progress(n) => {
                b.put_u8(b'p');
                b.put_u64(*n);
            }
            BackupMessage::Manifest => b.put_u8(b'm'),
        }
        b.freeze()
    }
}

/// Fuzz entry point: parsing never panics, and what parses encodes back to the input.
pub fn fuzz_backup_message(data: &[u8]) {
    let payload = Bytes::copy_from_slice(data);
    if let Ok(m) = BackupMessage::parse(&payload) {
        assert_eq!(m.encode(), payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn message() -> impl Strategy<Value = BackupMessage> {
        let text = "[a-z0-9/._]{0,12}";
        prop_oneof![
            (text, text).prop_map(|(name, location)| BackupMessage::NewArchive { name, location }),
            proptest::collection::vec(any::<u8>(), 0..64)
                .prop_map(|d| BackupMessage::Data(Bytes::from(d))),
            any::<u64>().prop_map(BackupMessage::Progress),
            Just(BackupMessage::Manifest),
        ]
    }

    proptest! {
        #[test]
        fn round_trips(m in message()) {
            prop_assert_eq!(BackupMessage::parse(&m.encode()), Ok(m));
        }

        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..40)) {
            fuzz_backup_message(&data);
        }
    }

    #[test]
    fn malformed_messages() {
        let p = |b: &[u8]| BackupMessage::parse(&Bytes::copy_from_slice(b));
        assert_eq!(p(b""), Err(BackupMessageError::Empty));
        assert_eq!(p(b"x"), Err(BackupMessageError::UnknownType(b'x')));
        assert_eq!(p(b"nbase.tar"), Err(BackupMessageError::Malformed("new archive")));
        assert_eq!(p(b"p\0\0"), Err(BackupMessageError::Malformed("progress")));
        assert_eq!(p(b"m1"), Err(BackupMessageError::Malformed("manifest")));
        assert_eq!(
            p(b"nbase.tar\0\0"),
            Ok(BackupMessage::NewArchive { name: "base.tar".into(), location: String::new() })
        );
    }
}
