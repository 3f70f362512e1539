//! Tar member headers as PostgreSQL 15 writes them (`src/port/tar.c: tarCreateHeader`):
//! ustar, numbers in octal with a trailing space (base-256 when too large), user and
//! group names `postgres`, the checksum as seven octal digits and a space.

/// The tar block size (`TAR_BLOCK_SIZE`).
pub const BLOCK: usize = 512;

/// What a member is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberKind {
    /// A regular file of this many bytes.
    File {
        /// Its size.
        size: u64,
    },
    /// A directory.
    Dir,
    /// A symbolic link to this target (PostgreSQL only writes links to directories).
    Symlink {
        /// The link's target.
        target: Vec<u8>,
    },
}

/// One member's header fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The name inside the archive (at most 99 bytes).
    pub name: Vec<u8>,
    /// What it is.
    pub kind: MemberKind,
    /// Permission bits (`mode & 07777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
}

/// Why a header cannot be written (`tarCreateHeader`'s `TAR_NAME_TOO_LONG`,
/// `TAR_SYMLINK_TOO_LONG`), with `_tarWriteHeader`'s messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TarError {
    /// The name is longer than 99 bytes.
    #[error("file name too long for tar format: \"{0}\"")]
    NameTooLong(String),
    /// The link target is longer than 99 bytes.
    #[error(
        "symbolic link target too long for tar format: file name \"{name}\", target \"{target}\""
    )]
    SymlinkTooLong {
        /// The link's name.
        name: String,
        /// Its target.
        target: String,
    },
}

/// `print_tar_number`: octal digits and a space when the value fits, else base-256
/// with a leading `0x80`.
fn put_number(field: &mut [u8], val: u64) {
    let len = field.len();
    let bits = (len as u32 - 1) * 3;
    if bits >= 64 || val < (1u64 << bits) {
        field[len - 1] = b' ';
        let mut v = val;
        for b in field[..len - 1].iter_mut().rev() {
            *b = b'0' + (v & 7) as u8;
            v >>= 3;
        }
    } else {
        field[0] = 0x80;
        let mut v = val;
        for b in field[1..].iter_mut().rev() {
            *b = (v & 0xff) as u8;
            v >>= 8;
        }
    }
}

/// `tarChecksum`: the byte sum with the checksum field counted as spaces.
fn checksum(h: &[u8; BLOCK]) -> u64 {
    let mut sum = 8 * u64::from(b' ');
    for (i, b) in h.iter().enumerate() {
        if !(148..156).contains(&i) {
            sum += u64::from(*b);
        }
    }
    sum
}

/// The 512-byte header of `m` (`tarCreateHeader`).
///
/// # Errors
/// A name or link target longer than 99 bytes.
pub fn header(m: &Member) -> Result<[u8; BLOCK], TarError> {
    let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    if m.name.len() > 99 {
        return Err(TarError::NameTooLong(lossy(&m.name)));
    }
    if let MemberKind::Symlink { target } = &m.kind {
        if target.len() > 99 {
            return Err(TarError::SymlinkTooLong { name: lossy(&m.name), target: lossy(target) });
        }
    }
    let mut h = [0u8; BLOCK];
    h[..m.name.len()].copy_from_slice(&m.name);
    let (size, typeflag) = match &m.kind {
        MemberKind::File { size } => (*size, b'0'),
        MemberKind::Dir => (0, b'5'),
        MemberKind::Symlink { target } => {
            h[157..157 + target.len()].copy_from_slice(target);
            (0, b'2')
        }
    };
    if typeflag != b'0' {
        // Directories and links to directories end with a slash (`strlcpy` then
        // `h[flen] = '/'` with `flen` at most 99).
        let flen = m.name.len().min(99);
        h[flen] = b'/';
        if flen + 1 < 100 {
            h[flen + 1] = 0;
        }
    }
    put_number(&mut h[100..108], u64::from(m.mode & 0o7777));
    put_number(&mut h[108..116], u64::from(m.uid));
    put_number(&mut h[116..124], u64::from(m.gid));
    put_number(&mut h[124..136], size);
    put_number(&mut h[136..148], m.mtime.max(0) as u64);
    h[156] = typeflag;
    h[257..262].copy_from_slice(b"ustar");
    h[263..265].copy_from_slice(b"00");
    h[265..273].copy_from_slice(b"postgres");
    h[297..305].copy_from_slice(b"postgres");
    put_number(&mut h[329..337], 0);
    put_number(&mut h[337..345], 0);
    let sum = checksum(&h);
    put_number(&mut h[148..156], sum);
    Ok(h)
}

/// The zero bytes that pad `len` bytes of content to a whole block
/// (`tarPaddingBytesRequired`).
pub fn padding(len: u64) -> usize {
    ((BLOCK as u64 - len % BLOCK as u64) % BLOCK as u64) as usize
}

/// The two zero blocks that end an archive.
pub const TRAILER: [u8; 2 * BLOCK] = [0; 2 * BLOCK];

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Reads a number field back (octal or base-256).
    fn number(field: &[u8]) -> u64 {
        if field[0] & 0x80 != 0 {
            field[1..].iter().fold(0u64, |v, b| (v << 8) | u64::from(*b))
        } else {
            let s = std::str::from_utf8(field).unwrap().trim_end_matches([' ', '\0']);
            u64::from_str_radix(s, 8).unwrap()
        }
    }

    #[test]
    fn backup_label_header_as_postgres_15_writes_it() {
        // The first header of a base.tar from PostgreSQL 15.18 (uid 101, gid 104).
        let h = header(&Member {
            name: b"backup_label".to_vec(),
            kind: MemberKind::File { size: 203 },
            mode: 0o600,
            uid: 0o145,
            gid: 0o150,
            mtime: 0o15305451525,
        })
        .unwrap();
        assert_eq!(
            &h[100..157],
            b"0000600 0000145 0000150 00000000313 15305451525 0015523 0".as_slice()
        );
        assert_eq!(&h[257..273], b"ustar\x0000postgres".as_slice());
        assert_eq!(&h[329..345], b"0000000 0000000 ".as_slice());
        let d = header(&Member {
            name: b"./pg_wal/archive_status".to_vec(),
            kind: MemberKind::Dir,
            mode: 0o700,
            uid: 0o145,
            gid: 0o150,
            mtime: 0o15305451525,
        })
        .unwrap();
        assert_eq!(&d[..25], b"./pg_wal/archive_status/\0".as_slice());
        assert_eq!(&d[100..157], b"0000700 0000145 0000150 00000000000 15305451525 0017627 5");
    }

    #[test]
    fn long_names_are_refused() {
        let m = |name: Vec<u8>, kind| Member { name, kind, mode: 0o600, uid: 0, gid: 0, mtime: 0 };
        assert!(header(&m(vec![b'a'; 99], MemberKind::Dir)).is_ok());
        let e = header(&m(vec![b'a'; 100], MemberKind::File { size: 0 })).unwrap_err();
        assert!(e.to_string().starts_with("file name too long for tar format: \"aaa"));
        let e = header(&m(b"l".to_vec(), MemberKind::Symlink { target: vec![b'/'; 100] }));
        assert!(matches!(e, Err(TarError::SymlinkTooLong { .. })));
    }

    proptest! {
        #[test]
        fn headers_read_back(
            name in proptest::collection::vec(1u8..=255, 1..=98),
            size in any::<u64>(),
            kind in 0..3u8,
            mode in any::<u32>(),
            uid in any::<u32>(),
            gid in any::<u32>(),
            mtime in any::<i64>(),
            target in proptest::collection::vec(1u8..=255, 1..=99),
        ) {
            let kind = match kind {
                0 => MemberKind::File { size },
                1 => MemberKind::Dir,
                _ => MemberKind::Symlink { target: target.clone() },
            };
            let m = Member { name: name.clone(), kind: kind.clone(), mode, uid, gid, mtime };
            let h = header(&m).unwrap();
            let end = h[..100].iter().position(|b| *b == 0).unwrap_or(100);
            let mut want = name.clone();
            if !matches!(kind, MemberKind::File { .. }) { want.push(b'/'); }
            prop_assert_eq!(&h[..end], want.as_slice());
            prop_assert_eq!(number(&h[100..108]), u64::from(mode & 0o7777));
            prop_assert_eq!(number(&h[108..116]), u64::from(uid));
            prop_assert_eq!(number(&h[116..124]), u64::from(gid));
            let want_size = if let MemberKind::File { size } = kind { size } else { 0 };
            prop_assert_eq!(number(&h[124..136]), want_size);
            prop_assert_eq!(number(&h[136..148]), mtime.max(0) as u64);
            prop_assert_eq!(number(&h[148..156]), checksum(&h));
            if let MemberKind::Symlink { target } = &m.kind {
                let tend = h[157..257].iter().position(|b| *b == 0).unwrap_or(100);
                prop_assert_eq!(&h[157..157 + tend], target.as_slice());
            }
        }
    }
}
