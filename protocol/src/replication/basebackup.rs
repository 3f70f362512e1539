//! The options of `BASE_BACKUP`, checked as PostgreSQL 15 checks them when it runs the
//! command (`replication/basebackup.c: parse_basebackup_options`).

use super::commands::GenericOption;
use super::options::{
    def_get_boolean, def_get_int64, def_get_string, parse_bool, OptionError, MAX_RATE_LOWER,
    MAX_RATE_UPPER,
};

/// Whether and how to send a backup manifest (`backup_manifest_option`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestOption {
    /// No manifest (the default).
    No,
    /// A manifest.
    Yes,
    /// A manifest with every file name hex-encoded.
    ForceEncode,
}

/// The checksum of each file in the manifest (`pg_checksum_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestChecksumType {
    /// `NONE`.
    None,
    /// `CRC32C` (the default when there is a manifest).
    Crc32c,
    /// `SHA224`.
    Sha224,
    /// `SHA256`.
    Sha256,
    /// `SHA384`.
    Sha384,
    /// `SHA512`.
    Sha512,
}

impl ManifestChecksumType {
    /// `checksum_helper.c: pg_checksum_parse_type`: the name in any case.
    pub fn parse(name: &str) -> Option<Self> {
        let all = [
            ("none", Self::None),
            ("crc32c", Self::Crc32c),
            ("sha224", Self::Sha224),
            ("sha256", Self::Sha256),
            ("sha384", Self::Sha384),
            ("sha512", Self::Sha512),
        ];
        all.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, t)| *t)
    }
}

/// Where the backup goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupTarget {
    /// No `TARGET`: to the client, one CopyOutResponse per tablespace as before
    /// PostgreSQL 15 (`use_copytblspc`).
    Default,
    /// `TARGET 'client'`: to the client in one COPY stream of `n`/`d`/`p`/`m` messages.
    Client,
    /// `TARGET 'server'` with the directory in `TARGET_DETAIL` (which PostgreSQL also
    /// checks for privileges when it runs the backup).
    Server {
        /// The directory on the server.
        path: String,
    },
    /// `TARGET 'blackhole'`: read everything, keep nothing.
    Blackhole,
}

/// `compression.c: parse_compress_algorithm` (names are case-sensitive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressionAlgorithm {
    /// `none` (the default).
    None,
    /// `gzip`.
    Gzip,
    /// `lz4`.
    Lz4,
    /// `zstd`.
    Zstd,
}

impl CompressionAlgorithm {
    /// The algorithm with this exact name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "none" => Some(Self::None),
            "gzip" => Some(Self::Gzip),
            "lz4" => Some(Self::Lz4),
            "zstd" => Some(Self::Zstd),
            _ => None,
        }
    }
}

/// The options of `BASE_BACKUP`, checked (`basebackup_options`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseBackupOptions {
    /// `LABEL` (default `base backup`).
    pub label: String,
    /// `PROGRESS`.
    pub progress: bool,
    /// `CHECKPOINT 'fast'` (default spread).
    pub fast_checkpoint: bool,
    /// `WAIT` (default true): wait for the WAL to be archived.
    pub wait: bool,
    /// `WAL`: include the WAL needed.
    pub include_wal: bool,
    /// `MAX_RATE` in kB/s, 32 ..= 1048576; `None` is unlimited.
    pub max_rate: Option<u32>,
    /// `TABLESPACE_MAP`.
    pub tablespace_map: bool,
    /// `VERIFY_CHECKSUMS` (default true).
    pub verify_checksums: bool,
    /// `MANIFEST`.
    pub manifest: ManifestOption,
    /// `MANIFEST_CHECKSUMS` (default CRC32C; `None` when there is no manifest).
    pub manifest_checksums: ManifestChecksumType,
    /// `TARGET` with `TARGET_DETAIL`.
    pub target: BackupTarget,
    /// `COMPRESSION`.
    pub compression: CompressionAlgorithm,
    /// `COMPRESSION_DETAIL`, unchecked: PostgreSQL's `parse_compress_specification`
    /// (level and workers per algorithm) is left to whoever compresses.
    pub compression_detail: Option<String>,
}

impl Default for BaseBackupOptions {
    fn default() -> Self {
        BaseBackupOptions {
            label: "base backup".to_string(),
            progress: false,
            fast_checkpoint: false,
            wait: true,
            include_wal: false,
            max_rate: None,
            tablespace_map: false,
            verify_checksums: true,
            manifest: ManifestOption::No,
            manifest_checksums: ManifestChecksumType::Crc32c,
            target: BackupTarget::Default,
            compression: CompressionAlgorithm::None,
            compression_detail: None,
        }
    }
}

/// What was seen while reading the options, for the checks made after the loop.
#[derive(Default)]
struct Seen {
    names: Vec<&'static str>,
    target: Option<String>,
    target_detail: Option<String>,
    compression: bool,
    manifest_checksums: bool,
}

impl Seen {
    /// `duplicate option "%s"` the second time `name` comes.
    fn first(&mut self, name: &'static str) -> Result<(), OptionError> {
        if self.names.contains(&name) {
            return Err(OptionError::DuplicateOption(name.to_string()));
        }
        self.names.push(name);
        Ok(())
    }
}

fn checkpoint(value: &str) -> Result<bool, OptionError> {
    match value.to_ascii_lowercase().as_str() {
        "fast" => Ok(true),
        "spread" => Ok(false),
        _ => Err(OptionError::UnrecognizedCheckpoint(value.to_string())),
    }
}

fn max_rate(o: &GenericOption) -> Result<u32, OptionError> {
    let rate = def_get_int64(o)?;
    if rate < i64::from(MAX_RATE_LOWER) || rate > i64::from(MAX_RATE_UPPER) {
        return Err(OptionError::MaxRateOutOfRange(rate as i32));
    }
    Ok(rate as u32)
}

fn manifest(value: &str) -> Result<ManifestOption, OptionError> {
    match parse_bool(value) {
        Some(true) => Ok(ManifestOption::Yes),
        Some(false) => Ok(ManifestOption::No),
        None if value.eq_ignore_ascii_case("force-encode") => Ok(ManifestOption::ForceEncode),
        None => Err(OptionError::UnrecognizedManifest(value.to_string())),
    }
}

/// One option of the loop in `parse_basebackup_options`. Where PostgreSQL reads the
/// value before its duplicate check, so does this.
fn apply(
    o: &GenericOption,
    opt: &mut BaseBackupOptions,
    seen: &mut Seen,
) -> Result<(), OptionError> {
    match o.name.as_str() {
        "label" => {
            seen.first("label")?;
            opt.label = def_get_string(o)?;
        }
        "progress" => {
            seen.first("progress")?;
            opt.progress = def_get_boolean(o)?;
        }
        "checkpoint" => {
            let v = def_get_string(o)?;
            seen.first("checkpoint")?;
            opt.fast_checkpoint = checkpoint(&v)?;
        }
        "wait" => {
            seen.first("wait")?;
            opt.wait = def_get_boolean(o)?;
        }
        "wal" => {
            seen.first("wal")?;
            opt.include_wal = def_get_boolean(o)?;
        }
        "max_rate" => {
            seen.first("max_rate")?;
            opt.max_rate = Some(max_rate(o)?);
        }
        "tablespace_map" => {
            seen.first("tablespace_map")?;
            opt.tablespace_map = def_get_boolean(o)?;
        }
        "verify_checksums" => {
            seen.first("verify_checksums")?;
            opt.verify_checksums = def_get_boolean(o)?;
        }
        "manifest" => {
            let v = def_get_string(o)?;
            seen.first("manifest")?;
            opt.manifest = manifest(&v)?;
        }
        "manifest_checksums" => {
            let v = def_get_string(o)?;
            seen.first("manifest_checksums")?;
            opt.manifest_checksums =
                ManifestChecksumType::parse(&v).ok_or(OptionError::UnrecognizedChecksum(v))?;
            seen.manifest_checksums = true;
        }
        "target" => {
            seen.first("target")?;
            seen.target = Some(def_get_string(o)?);
        }
        "target_detail" => {
            let v = def_get_string(o)?;
            seen.first("target_detail")?;
            seen.target_detail = Some(v);
        }
        "compression" => {
            let v = def_get_string(o)?;
            seen.first("compression")?;
            opt.compression =
                CompressionAlgorithm::parse(&v).ok_or(OptionError::UnrecognizedCompression(v))?;
            seen.compression = true;
        }
        "compression_detail" => {
            seen.first("compression_detail")?;
            opt.compression_detail = Some(def_get_string(o)?);
        }
        other => return Err(OptionError::UnrecognizedBaseBackupOption(other.to_string())),
    }
    Ok(())
}

/// `basebackup.c: parse_basebackup_options` after the loop, with
/// `basebackup_target.c: BaseBackupGetTargetHandle` for the target.
fn target(target: Option<String>, detail: Option<String>) -> Result<BackupTarget, OptionError> {
    match (target.as_deref(), detail) {
        (None, None) => Ok(BackupTarget::Default),
        (None, Some(_)) => Err(OptionError::TargetDetailWithoutTarget),
        (Some("client"), None) => Ok(BackupTarget::Client),
        (Some("blackhole"), None) => Ok(BackupTarget::Blackhole),
        (Some(t @ ("client" | "blackhole")), Some(_)) => {
            Err(OptionError::TargetDoesNotAcceptDetail(t.to_string()))
        }
        (Some("server"), Some(path)) => Ok(BackupTarget::Server { path }),
        (Some("server"), None) => Err(OptionError::TargetRequiresDetail("server".to_string())),
        (Some(other), _) => Err(OptionError::UnrecognizedTarget(other.to_string())),
    }
}

/// Checks the options of `BASE_BACKUP` in PostgreSQL 15's order, with its messages.
///
/// # Errors
/// [`OptionError`]: `unrecognized base backup option: "%s"`, `duplicate option "%s"`,
/// the value errors (`%s requires a Boolean value`, `unrecognized checkpoint type`,
/// `MAX_RATE` range, manifest, checksum and compression names), then the checks across
/// options (manifest checksums without manifest, target and target detail, compression
/// detail without compression).
pub fn parse_base_backup_options(
    options: &[GenericOption],
) -> Result<BaseBackupOptions, OptionError> {
    let mut opt = BaseBackupOptions::default();
    let mut seen = Seen::default();
    for o in options {
        apply(o, &mut opt, &mut seen)?;
    }
    if opt.manifest == ManifestOption::No {
        if seen.manifest_checksums {
            return Err(OptionError::ManifestChecksumsWithoutManifest);
        }
        opt.manifest_checksums = ManifestChecksumType::None;
    }
    opt.target = target(seen.target.take(), seen.target_detail.take())?;
    if opt.compression_detail.is_some() && !seen.compression {
        return Err(OptionError::CompressionDetailWithoutCompression);
    }
    Ok(opt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replication::{parse_command, ReplicationCommand};

    fn options(cmd: &str) -> Result<BaseBackupOptions, OptionError> {
        match parse_command(cmd).unwrap() {
            ReplicationCommand::BaseBackup { options } => parse_base_backup_options(&options),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pg_basebackup_15_options() {
        let o = options(
            "BASE_BACKUP ( LABEL 'pg_basebackup base backup',  PROGRESS,  CHECKPOINT 'fast',  \
             WAIT 0,  MANIFEST 'yes',  TARGET 'client')",
        )
        .unwrap();
        assert_eq!(o.label, "pg_basebackup base backup");
        assert!(o.progress && o.fast_checkpoint && !o.wait);
        assert_eq!(o.manifest, ManifestOption::Yes);
        assert_eq!(o.manifest_checksums, ManifestChecksumType::Crc32c);
        assert_eq!(o.target, BackupTarget::Client);
        let d = options("BASE_BACKUP").unwrap();
        assert_eq!(d.label, "base backup");
        assert_eq!(d.manifest_checksums, ManifestChecksumType::None);
        assert_eq!(d.target, BackupTarget::Default);
        let o = options("BASE_BACKUP (MAX_RATE 32, MANIFEST 'force-encode', MANIFEST_CHECKSUMS SHA256, TARGET 'server', TARGET_DETAIL '/tmp/x', COMPRESSION 'gzip', COMPRESSION_DETAIL '5', VERIFY_CHECKSUMS false, WAL, TABLESPACE_MAP)").unwrap();
        assert_eq!(o.max_rate, Some(32));
        assert_eq!(o.manifest, ManifestOption::ForceEncode);
        assert_eq!(o.manifest_checksums, ManifestChecksumType::Sha256);
        assert_eq!(o.target, BackupTarget::Server { path: "/tmp/x".into() });
        assert_eq!(o.compression, CompressionAlgorithm::Gzip);
        assert_eq!(o.compression_detail.as_deref(), Some("5"));
        assert!(!o.verify_checksums && o.include_wal && o.tablespace_map);
    }

    #[test]
    fn errors_as_postgres_15_gives_them() {
        // Texts and SQLSTATEs checked against a live 15.18 server.
        let cases = [
            ("(foo)", "unrecognized base backup option: \"foo\"", "42601"),
            ("(TEMPORARY)", "unrecognized base backup option: \"temporary\"", "42601"),
            ("(LABEL 'a', LABEL 'b')", "duplicate option \"label\"", "42601"),
            (
                "(MAX_RATE 1)",
                "1 is outside the valid range for parameter \"MAX_RATE\" (32 .. 1048576)",
                "22003",
            ),
            (
                "(MAX_RATE 4294967295)",
                "-1 is outside the valid range for parameter \"MAX_RATE\" (32 .. 1048576)",
                "22003",
            ),
            ("(MAX_RATE '100')", "max_rate requires a numeric value", "42601"),
            ("(MAX_RATE)", "max_rate requires a numeric value", "42601"),
            ("(CHECKPOINT 'x')", "unrecognized checkpoint type: \"x\"", "42601"),
            ("(MANIFEST 'x')", "unrecognized manifest option: \"x\"", "42601"),
            ("(MANIFEST_CHECKSUMS 'x')", "unrecognized checksum algorithm: \"x\"", "42601"),
            ("(PROGRESS yes)", "progress requires a Boolean value", "42601"),
            ("(LABEL)", "label requires a parameter", "42601"),
            ("(TARGET 'x')", "unrecognized target: \"x\"", "0A000"),
            (
                "(TARGET 'client', TARGET_DETAIL 'x')",
                "target \"client\" does not accept a target detail",
                "42601",
            ),
            (
                "(TARGET 'blackhole', TARGET_DETAIL 'x')",
                "target \"blackhole\" does not accept a target detail",
                "42601",
            ),
            ("(TARGET 'server')", "target \"server\" requires a target detail", "42601"),
            ("(TARGET_DETAIL 'x')", "target detail cannot be used without target", "42601"),
            ("(COMPRESSION 'GZIP')", "unrecognized compression algorithm: \"GZIP\"", "42601"),
            (
                "(MANIFEST 'no', MANIFEST_CHECKSUMS 'sha256')",
                "manifest checksums require a backup manifest",
                "42601",
            ),
            (
                "(COMPRESSION_DETAIL '1')",
                "compression detail cannot be specified unless compression is enabled",
                "42601",
            ),
        ];
        for (opts, msg, code) in cases {
            let e = options(&format!("BASE_BACKUP {opts}")).unwrap_err();
            assert_eq!((e.to_string().as_str(), e.sqlstate()), (msg, code), "{opts}");
        }
        let ok =
            options("BASE_BACKUP (MANIFEST 'tr', MANIFEST_CHECKSUMS 'sha256', TARGET 'blackhole')");
        assert_eq!(ok.unwrap().target, BackupTarget::Blackhole);
    }
}
