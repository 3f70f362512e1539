//! The backup manifest as PostgreSQL 15 writes it (`replication/backup_manifest.c`):
//! one line per file, the WAL ranges, and a SHA-256 of everything before
//! `"Manifest-Checksum"`.

use sha2::Digest;
use walstream_protocol::replication::ManifestChecksumType;
use walstream_protocol::timeline::TimelineHistory;
use walstream_protocol::{Lsn, TimeLineId};

/// A running checksum of one file (`pg_checksum_context`).
#[derive(Debug, Clone)]
pub enum FileChecksum {
    /// No checksum.
    None,
    /// CRC-32C.
    Crc32c(u32),
    /// SHA-224.
    Sha224(sha2::Sha224),
    /// SHA-256.
    Sha256(sha2::Sha256),
    /// SHA-384.
    Sha384(sha2::Sha384),
    /// SHA-512.
    Sha512(sha2::Sha512),
}

impl FileChecksum {
    /// A fresh checksum of `kind` (`pg_checksum_init`).
    pub fn new(kind: ManifestChecksumType) -> Self {
        match kind {
            ManifestChecksumType::None => FileChecksum::None,
            ManifestChecksumType::Crc32c => FileChecksum::Crc32c(0),
            ManifestChecksumType::Sha224 => FileChecksum::Sha224(sha2::Sha224::new()),
            ManifestChecksumType::Sha256 => FileChecksum::Sha256(sha2::Sha256::new()),
            ManifestChecksumType::Sha384 => FileChecksum::Sha384(sha2::Sha384::new()),
            ManifestChecksumType::Sha512 => FileChecksum::Sha512(sha2::Sha512::new()),
        }
    }

    /// Adds bytes (`pg_checksum_update`).
    pub fn update(&mut self, data: &[u8]) {
        match self {
            FileChecksum::None => {}
            FileChecksum::Crc32c(c) => *c = crc32c::crc32c_append(*c, data),
            FileChecksum::Sha224(h) => h.update(data),
            FileChecksum::Sha256(h) => h.update(data),
            FileChecksum::Sha384(h) => h.update(data),
            FileChecksum::Sha512(h) => h.update(data),
        }
    }

    /// The algorithm's name and the checksum in hex (`pg_checksum_type_name`,
    /// `pg_checksum_final`); `None` for no checksum. A CRC-32C is its four bytes in the
    /// server's memory order, which on every platform walstream runs on is little-endian.
    pub fn finish(self) -> Option<(&'static str, String)> {
        let (name, bytes) = match self {
            FileChecksum::None => return None,
            FileChecksum::Crc32c(c) => ("CRC32C", c.to_le_bytes().to_vec()),
            FileChecksum::Sha224(h) => ("SHA224", h.finalize().to_vec()),
            FileChecksum::Sha256(h) => ("SHA256", h.finalize().to_vec()),
            FileChecksum::Sha384(h) => ("SHA384", h.finalize().to_vec()),
            FileChecksum::Sha512(h) => ("SHA512", h.finalize().to_vec()),
        };
        Some((name, hex(&bytes)))
    }
}

/// Lower-case hex (`hex_encode`).
fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// `escape_json`: a JSON string with PostgreSQL's escapes.
fn escape_json(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Why the WAL ranges could not be written (`AddWALInfoToBackupManifest`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalRangeError {
    /// The newest timeline that matters is not the end timeline. (PostgreSQL 15 prints
    /// the start timeline first here, and so does this.)
    #[error("expected end timeline {0} but found timeline {1}")]
    EndTimeline(u32, u32),
    /// A timeline without a beginning that is not the start timeline.
    #[error("expected start timeline {0} but found timeline {1}")]
    StartTimeline(u32, u32),
    /// The start timeline is not in the end timeline's history.
    #[error("start timeline {0} not found in history of timeline {1}")]
    StartNotFound(u32, u32),
}

/// A manifest being built (`backup_manifest_info`).
#[derive(Debug)]
pub struct Manifest {
    text: String,
    force_encode: bool,
    first_file: bool,
    checksum_type: ManifestChecksumType,
}

impl Manifest {
    /// `InitializeBackupManifest`.
    pub fn new(force_encode: bool, checksum_type: ManifestChecksumType) -> Self {
        Manifest {
            text: "{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [".to_string(),
            force_encode,
            first_file: true,
            checksum_type,
        }
    }

    /// A fresh checksum of the kind this manifest lists.
    pub fn checksum(&self) -> FileChecksum {
        FileChecksum::new(self.checksum_type)
    }

    /// `AddFileToBackupManifest`: `path` relative to the data directory.
    pub fn add_file(&mut self, path: &[u8], size: u64, mtime: i64, checksum: FileChecksum) {
        let t = &mut self.text;
        t.push_str(if self.first_file { "\n" } else { ",\n" });
        self.first_file = false;
        match std::str::from_utf8(path) {
            Ok(p) if !self.force_encode && !p.contains('\0') => {
                t.push_str("{ \"Path\": ");
                escape_json(t, p);
                t.push_str(", ");
            }
            _ => {
                t.push_str("{ \"Encoded-Path\": \"");
                t.push_str(&hex(path));
                t.push_str("\", ");
            }
        }
        t.push_str(&format!("\"Size\": {size}, \"Last-Modified\": \"{}\"", gmt(mtime)));
        if let Some((name, sum)) = checksum.finish() {
            t.push_str(&format!(", \"Checksum-Algorithm\": \"{name}\", \"Checksum\": \"{sum}\""));
        }
        t.push_str(" }");
    }

    /// `AddWALInfoToBackupManifest`: the WAL from `start` on `start_tli` to `end` on
    /// `end_tli`, one range per timeline of `history` (the end timeline's) it crosses.
    ///
    /// # Errors
    /// The start timeline is not in the history, as PostgreSQL reports it.
    pub fn add_wal_ranges(
        &mut self,
        start: Lsn,
        start_tli: TimeLineId,
        end: Lsn,
        history: &TimelineHistory,
    ) -> Result<(), WalRangeError> {
        let end_tli = history.tli;
        self.text.push_str("\n],\n\"WAL-Ranges\": [\n");
        // readTimeLineHistory: newest first, each with where it began and ended.
        let mut entries = Vec::new();
        let mut begin = Lsn(0);
        for a in &history.ancestors {
            entries.push((a.tli, begin, a.switchpoint));
            begin = a.switchpoint;
        }
        entries.push((end_tli, begin, Lsn(0)));
        entries.reverse();
        let mut first = true;
        let mut endptr = end;
        let mut found = false;
        for (tli, begin, tl_end) in entries {
            if tl_end.is_valid() && tl_end < start {
                continue;
            }
            if first && end_tli != tli {
                return Err(WalRangeError::EndTimeline(start_tli.0, tli.0));
            }
            let tl_begin = if begin.is_valid() {
                begin
            } else {
                if start_tli != tli {
                    return Err(WalRangeError::StartTimeline(start_tli.0, tli.0));
                }
                start
            };
            self.text.push_str(&format!(
                "{}{{ \"Timeline\": {}, \"Start-LSN\": \"{}\", \"End-LSN\": \"{}\" }}",
                if first { "" } else { ",\n" },
                tli.0,
                tl_begin,
                endptr
            ));
            if start_tli == tli {
                found = true;
                break;
            }
            endptr = begin;
            first = false;
        }
        if !found {
            return Err(WalRangeError::StartNotFound(start_tli.0, end_tli.0));
        }
        self.text.push_str("\n],\n");
        Ok(())
    }

    /// `SendBackupManifest`'s text: everything so far and its SHA-256.
    pub fn finish(mut self) -> Vec<u8> {
        let sum = sha2::Sha256::digest(self.text.as_bytes());
        self.text.push_str("\"Manifest-Checksum\": \"");
        self.text.push_str(&hex(&sum));
        self.text.push_str("\"}\n");
        self.text.into_bytes()
    }
}

/// `pg_strftime("%Y-%m-%d %H:%M:%S %Z", pg_gmtime(&mtime))`.
fn gmt(mtime: i64) -> String {
    match jiff::Timestamp::from_second(mtime) {
        Ok(t) => t.strftime("%Y-%m-%d %H:%M:%S GMT").to_string(),
        Err(_) => "1970-01-01 00:00:00 GMT".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Manifest {
        let mut m = Manifest::new(false, ManifestChecksumType::Crc32c);
        let mut c = m.checksum();
        c.update(b"15\n");
        // 2026-12-07 06:28:21 GMT
        m.add_file(b"PG_VERSION", 3, 1_796_624_901, c);
        let c = m.checksum();
        m.add_file(b"global/6100", 0, 1_796_624_902, c);
        m
    }

    #[test]
    fn lines_as_postgres_15_writes_them() {
        let mut m = sample();
        m.add_wal_ranges(
            Lsn(0x200_0028),
            TimeLineId(1),
            Lsn(0x200_0100),
            &TimelineHistory::first(),
        )
        .unwrap();
        let text = String::from_utf8(m.finish()).unwrap();
        let want_head = "{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [\n\
            { \"Path\": \"PG_VERSION\", \"Size\": 3, \"Last-Modified\": \"2026-12-07 06:28:21 GMT\", \"Checksum-Algorithm\": \"CRC32C\", \"Checksum\": \"8a744722\" },\n\
            { \"Path\": \"global/6100\", \"Size\": 0, \"Last-Modified\": \"2026-12-07 06:28:22 GMT\", \"Checksum-Algorithm\": \"CRC32C\", \"Checksum\": \"00000000\" }\n],\n\
            \"WAL-Ranges\": [\n{ \"Timeline\": 1, \"Start-LSN\": \"0/2000028\", \"End-LSN\": \"0/2000100\" }\n],\n\
            \"Manifest-Checksum\": \"";
        assert!(text.starts_with(want_head), "{text}");
        assert!(text.ends_with("\"}\n"));
        let body = &text[..text.find("\"Manifest-Checksum\"").unwrap()];
        let sum = hex(&sha2::Sha256::digest(body.as_bytes()));
        assert!(text.contains(&sum));
    }

    #[test]
    fn ranges_across_timelines_and_encoded_paths() {
        let history =
            TimelineHistory::parse(TimeLineId(3), b"1\t0/3000000\tx\n2\t0/5000000\ty\n").unwrap();
        let mut m = Manifest::new(true, ManifestChecksumType::None);
        m.add_file(b"a\"b", 1, 0, FileChecksum::None);
        m.add_wal_ranges(Lsn(0x200_0028), TimeLineId(1), Lsn(0x600_0000), &history).unwrap();
        let text = String::from_utf8(m.finish()).unwrap();
        assert!(text.contains("{ \"Encoded-Path\": \"612262\", \"Size\": 1, \"Last-Modified\": \"1970-01-01 00:00:00 GMT\" }"), "{text}");
        assert!(
            text.contains(
                "{ \"Timeline\": 3, \"Start-LSN\": \"0/5000000\", \"End-LSN\": \"0/6000000\" },\n\
             { \"Timeline\": 2, \"Start-LSN\": \"0/3000000\", \"End-LSN\": \"0/5000000\" },\n\
             { \"Timeline\": 1, \"Start-LSN\": \"0/2000028\", \"End-LSN\": \"0/3000000\" }\n],\n"
            ),
            "{text}"
        );
        let mut m = Manifest::new(false, ManifestChecksumType::None);
        let e = m.add_wal_ranges(Lsn(0x700_0000), TimeLineId(1), Lsn(0x800_0000), &history);
        assert_eq!(
            e.unwrap_err().to_string(),
            "start timeline 1 not found in history of timeline 3"
        );
    }

    proptest! {
        #[test]
        fn manifests_are_json_with_every_file(
            files in proptest::collection::vec(
                (proptest::collection::vec(any::<u8>(), 1..40), any::<u32>(), 0i64..4_000_000_000, any::<bool>()),
                0..20),
            force in any::<bool>(),
            kind in 0..6usize,
        ) {
            let kinds = [
                ManifestChecksumType::None, ManifestChecksumType::Crc32c,
                ManifestChecksumType::Sha224, ManifestChecksumType::Sha256,
                ManifestChecksumType::Sha384, ManifestChecksumType::Sha512,
            ];
            let mut m = Manifest::new(force, kinds[kind]);
            for (path, size, mtime, _) in &files {
                let mut c = m.checksum();
                c.update(path);
                m.add_file(path, u64::from(*size), *mtime, c);
            }
            m.add_wal_ranges(Lsn(1), TimeLineId(1), Lsn(2), &TimelineHistory::first()).unwrap();
            let text = m.finish();
            let v: serde_json::Value = serde_json::from_slice(&text).unwrap();
            let listed = v["Files"].as_array().unwrap();
            prop_assert_eq!(listed.len(), files.len());
            for (entry, (path, size, _, _)) in listed.iter().zip(&files) {
                prop_assert_eq!(entry["Size"].as_u64(), Some(u64::from(*size)));
                let got = match entry.get("Path") {
                    Some(p) => p.as_str().unwrap().as_bytes().to_vec(),
                    None => {
                        let h = entry["Encoded-Path"].as_str().unwrap();
                        (0..h.len()).step_by(2).map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap()).collect()
                    }
                };
                prop_assert_eq!(&got, path);
            }
        }
    }
}
