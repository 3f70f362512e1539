//! The server's settings, by PostgreSQL's GUC names, values and units (`utils/misc/guc.c`).
//!
//! `walstream serve -c name=value` sets them; `SHOW name` on a replication connection reads
//! them back formatted as PostgreSQL formats them (`60s` shows as `1min`).

use std::time::Duration;

use walstream_protocol::wire::{sqlstate, ErrorFields};

/// The `server_version` walstream reports: PostgreSQL 15's protocol and WAL format, as
/// libpq's `PQserverVersion` parses it (150018).
pub const SERVER_VERSION: &str = concat!("15.18 (walstream ", env!("CARGO_PKG_VERSION"), ")");
/// `server_version_num` for [`SERVER_VERSION`].
pub const SERVER_VERSION_NUM: u32 = 150018;

/// The settings of one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `max_connections` (default 100): client backends and walsenders together.
    pub max_connections: u32,
    /// `superuser_reserved_connections` (default 3).
    pub superuser_reserved_connections: u32,
    /// `max_wal_senders` (default 10).
    pub max_wal_senders: u32,
    /// `max_replication_slots` (default 10).
    pub max_replication_slots: u32,
    /// `wal_sender_timeout` (default 60 s; zero disables it).
    pub wal_sender_timeout: Duration,
    /// `wal_keep_size` in MB (default 0): WAL kept behind the flushed end for standbys.
    pub wal_keep_size_mb: u64,
    /// `max_slot_wal_keep_size` in MB, `-1` for unlimited (default).
    pub max_slot_wal_keep_size_mb: i64,
    /// `max_wal_size` in MB: set, old segments beyond it (and `wal_keep_size`) that no slot
    /// needs are removed every `checkpoint_timeout`; unset (`-1`, the default here), a
    /// served directory keeps everything, since walstream may not own it.
    pub max_wal_size_mb: Option<u64>,
    /// `checkpoint_timeout` (default 5 min): how often old segments are removed.
    pub checkpoint_timeout: Duration,
    /// `walstream.max_send_size` in bytes (default 128 kB, `MAX_SEND_SIZE`): the largest
    /// XLogData payload. A multiple of the WAL page size.
    pub max_send_size: u32,
    /// `authentication_timeout` (default 1 min).
    pub authentication_timeout: Duration,
    /// `cluster_name` (default empty).
    pub cluster_name: String,
    /// `ssl`, `ssl_cert_file`, `ssl_key_file`, `ssl_ca_file`, `ssl_min_protocol_version`.
    pub ssl: SslSettings,
}

/// The TLS settings (`guc.c`; files relative to the data directory, as PostgreSQL reads
/// them from its working directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SslSettings {
    /// `ssl` (default off): answer SSLRequest with `S` and a handshake.
    pub enabled: bool,
    /// `ssl_cert_file` (default `server.crt`).
    pub cert_file: String,
    /// `ssl_key_file` (default `server.key`).
    pub key_file: String,
    /// `ssl_ca_file` (default empty): the roots client certificates are checked against.
    pub ca_file: String,
    /// `ssl_min_protocol_version` (default `TLSv1.2`).
    pub min_protocol_version: TlsVersion,
}

impl Default for SslSettings {
    fn default() -> Self {
        SslSettings {
            enabled: false,
            cert_file: "server.crt".to_string(),
            key_file: "server.key".to_string(),
            ca_file: String::new(),
            min_protocol_version: TlsVersion::V1_2,
        }
    }
}

/// A TLS protocol version, as `ssl_min_protocol_version` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// `TLSv1`.
    V1,
    /// `TLSv1.1`.
    V1_1,
    /// `TLSv1.2`.
    V1_2,
    /// `TLSv1.3`.
    V1_3,
}

impl TlsVersion {
    const ALL: [(TlsVersion, &'static str); 4] = [
        (TlsVersion::V1, "TLSv1"),
        (TlsVersion::V1_1, "TLSv1.1"),
        (TlsVersion::V1_2, "TLSv1.2"),
        (TlsVersion::V1_3, "TLSv1.3"),
    ];

    /// The name PostgreSQL shows (`TLSv1.2`).
    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(v, _)| *v == self).map_or("", |(_, n)| n)
    }

    /// The version a name (any case) stands for (`guc.c: ssl_protocol_versions_info`).
    pub fn parse(name: &str) -> Option<TlsVersion> {
        Self::ALL.iter().find(|(_, n)| n.eq_ignore_ascii_case(name.trim())).map(|(v, _)| *v)
    }
}

/// `guc.c: parse_bool`: on/off, true/false, yes/no, 1/0 and unique prefixes, any case.
pub fn parse_bool(value: &str) -> Option<bool> {
    let v = value.trim().to_ascii_lowercase();
    let prefix_of = |word: &str, min: usize| v.len() >= min && word.starts_with(v.as_str());
    match v.as_str() {
        "1" => Some(true),
        "0" => Some(false),
        _ if prefix_of("true", 1) || prefix_of("yes", 1) || prefix_of("on", 2) => Some(true),
        _ if prefix_of("false", 1) || prefix_of("no", 1) || prefix_of("off", 2) => Some(false),
        _ => None,
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_connections: 100,
            superuser_reserved_connections: 3,
            max_wal_senders: 10,
            max_replication_slots: 10,
            wal_sender_timeout: Duration::from_secs(60),
            wal_keep_size_mb: 0,
            max_slot_wal_keep_size_mb: -1,
            max_wal_size_mb: None,
            checkpoint_timeout: Duration::from_secs(300),
            max_send_size: 128 * 1024,
            authentication_timeout: Duration::from_secs(60),
            cluster_name: String::new(),
            ssl: SslSettings::default(),
        }
    }
}

/// A setting that could not be set, with PostgreSQL's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", fields.message)]
pub struct SettingError {
    /// The error as a client would see it.
    pub fields: ErrorFields,
}

impl SettingError {
    /// `42704 unrecognized configuration parameter "name"`.
    pub fn unrecognized(name: &str) -> SettingError {
        SettingError {
            fields: ErrorFields::error(
                sqlstate::UNDEFINED_OBJECT,
                format!("unrecognized configuration parameter \"{name}\""),
            ),
        }
    }

    /// `22023 invalid value for parameter "name": "value"`, with an optional HINT.
    pub fn invalid(name: &str, value: &str, hint: Option<&str>) -> SettingError {
        let mut fields = ErrorFields::error(
            sqlstate::INVALID_PARAMETER_VALUE,
            format!("invalid value for parameter \"{name}\": \"{value}\""),
        );
        if let Some(hint) = hint {
            fields = fields.with_hint(hint);
        }
        SettingError { fields }
    }

    /// `22023 V is outside the valid range for parameter "name" (min .. max)`.
    pub fn range(name: &str, value: &str, min: i64, max: i64) -> SettingError {
        SettingError {
            fields: ErrorFields::error(
                sqlstate::INVALID_PARAMETER_VALUE,
                format!(
                    "{value} is outside the valid range for parameter \"{name}\" ({min} .. {max})"
                ),
            ),
        }
    }
}

/// The unit of an integer setting (`GUC_UNIT_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// No unit.
    None,
    /// Milliseconds.
    Ms,
    /// Seconds.
    S,
    /// Megabytes.
    Mb,
    /// Bytes.
    Bytes,
}

const TIME_HINT: &str =
    "Valid units for this parameter are \"us\", \"ms\", \"s\", \"min\", \"h\", and \"d\".";
const MEMORY_HINT: &str =
    "Valid units for this parameter are \"B\", \"kB\", \"MB\", \"GB\", and \"TB\".";

/// Parses an integer with an optional unit into the setting's base unit
/// (`guc.c: parse_int`, `convert_to_base_unit`).
///
/// # Errors
/// `22023 invalid value` (with the units HINT when the suffix is not a unit).
pub fn parse_int(name: &str, value: &str, unit: Unit) -> Result<i64, SettingError> {
    let trimmed = value.trim();
    let digits_end = trimmed
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && (c == '-' || c == '+'))))
        .map_or(trimmed.len(), |(i, _)| i);
    let number: i64 =
        trimmed[..digits_end].parse().map_err(|_| SettingError::invalid(name, value, None))?;
    let suffix = trimmed[digits_end..].trim();
    if suffix.is_empty() {
        return Ok(number);
    }
    // Multipliers to the base unit.
    let (factor, hint): (Option<f64>, &str) = match unit {
        Unit::None => (None, ""),
        Unit::Ms | Unit::S => {
            let ms = match suffix {
                "us" => Some(0.001),
                "ms" => Some(1.0),
                "s" => Some(1000.0),
                "min" => Some(60_000.0),
                "h" => Some(3_600_000.0),
                "d" => Some(86_400_000.0),
                _ => None,
            };
            let base = if unit == Unit::S { 1000.0 } else { 1.0 };
            (ms.map(|m| m / base), TIME_HINT)
        }
        Unit::Mb | Unit::Bytes => {
            let bytes = match suffix {
                "B" => Some(1.0),
                "kB" => Some(1024.0),
                "MB" => Some(1024.0 * 1024.0),
                "GB" => Some(1024.0 * 1024.0 * 1024.0),
                "TB" => Some(1024.0 * 1024.0 * 1024.0 * 1024.0),
                _ => None,
            };
            let base = if unit == Unit::Mb { 1024.0 * 1024.0 } else { 1.0 };
            (bytes.map(|b| b / base), MEMORY_HINT)
        }
    };
    let factor = factor
        .ok_or_else(|| SettingError::invalid(name, value, (!hint.is_empty()).then_some(hint)))?;
    Ok((number as f64 * factor).round() as i64)
}

/// Formats a value in the largest unit that divides it (`guc.c: convert_int_from_base_unit`).
pub fn format_int(value: i64, unit: Unit) -> String {
    let units: &[(&str, i64)] = match unit {
        Unit::None => return value.to_string(),
        Unit::Ms => &[("d", 86_400_000), ("h", 3_600_000), ("min", 60_000), ("s", 1000), ("ms", 1)],
        Unit::S => &[("d", 86_400), ("h", 3600), ("min", 60), ("s", 1)],
        Unit::Mb => &[("TB", 1 << 20), ("GB", 1 << 10), ("MB", 1)],
        Unit::Bytes => {
            &[("TB", 1 << 40), ("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10), ("B", 1)]
        }
    };
    // guc.c: _ShowOption converts only positive values; zero and -1 print bare.
    if value <= 0 {
        return value.to_string();
    }
    for &(suffix, factor) in units {
        if value % factor == 0 {
            return format!("{}{suffix}", value / factor);
        }
    }
    value.to_string()
}

/// `v` when it lies in `min..=max`.
///
/// # Errors
/// `22023 ... is outside the valid range`.
pub fn checked_range(name: &str, v: i64, min: i64, max: i64) -> Result<i64, SettingError> {
    if v < min || v > max {
        return Err(SettingError::range(name, &v.to_string(), min, max));
    }
    Ok(v)
}

impl Settings {
    /// Sets `name` to `value` as `-c name=value` would.
    ///
    /// # Errors
    /// An unknown name (`42704`), a value that does not parse or is out of range (`22023`).
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), SettingError> {
        let lower = name.to_ascii_lowercase();
        let int = |unit, min, max| -> Result<i64, SettingError> {
            let v = parse_int(&lower, value, unit)?;
            checked_range(&lower, v, min, max)
        };
        match lower.as_str() {
            "max_connections" => self.max_connections = int(Unit::None, 1, 262_143)? as u32,
            "superuser_reserved_connections" => {
                self.superuser_reserved_connections = int(Unit::None, 0, 262_143)? as u32
            }
            "max_wal_senders" => self.max_wal_senders = int(Unit::None, 0, 262_143)? as u32,
            "max_replication_slots" => {
                self.max_replication_slots = int(Unit::None, 0, 262_143)? as u32
            }
            "wal_sender_timeout" => {
                self.wal_sender_timeout =
                    Duration::from_millis(int(Unit::Ms, 0, i32::MAX.into())? as u64)
            }
            "authentication_timeout" => {
                self.authentication_timeout = Duration::from_secs(int(Unit::S, 1, 600)? as u64)
            }
            "wal_keep_size" => self.wal_keep_size_mb = int(Unit::Mb, 0, i32::MAX.into())? as u64,
            "max_slot_wal_keep_size" => {
                self.max_slot_wal_keep_size_mb = int(Unit::Mb, -1, i32::MAX.into())?
            }
            "max_wal_size" => {
                let v = int(Unit::Mb, -1, i32::MAX.into())?;
                if (0..2).contains(&v) {
                    return Err(SettingError::range(&lower, &v.to_string(), 2, i32::MAX.into()));
                }
                self.max_wal_size_mb = u64::try_from(v).ok();
            }
            "checkpoint_timeout" => {
                self.checkpoint_timeout = Duration::from_secs(int(Unit::S, 30, 86_400)? as u64)
            }
            "walstream.max_send_size" => {
                let v = int(Unit::Bytes, 8192, 1 << 30)?;
                if v % 8192 != 0 {
                    return Err(SettingError::invalid(
                        &lower,
                        value,
                        Some("The value must be a multiple of the WAL page size (8kB)."),
                    ));
                }
                self.max_send_size = v as u32;
            }
            "cluster_name" => self.cluster_name = value.to_string(),
            "ssl" => {
                self.ssl.enabled = parse_bool(value).ok_or_else(|| SettingError {
                    fields: ErrorFields::error(
                        sqlstate::INVALID_PARAMETER_VALUE,
                        format!("parameter \"{lower}\" requires a Boolean value"),
                    ),
                })?
            }
            "ssl_cert_file" => self.ssl.cert_file = value.to_string(),
            "ssl_key_file" => self.ssl.key_file = value.to_string(),
            "ssl_ca_file" => self.ssl.ca_file = value.to_string(),
            "ssl_min_protocol_version" => {
                self.ssl.min_protocol_version = TlsVersion::parse(value).ok_or_else(|| {
                    SettingError::invalid(
                        &lower,
                        value,
                        Some("Available values: TLSv1, TLSv1.1, TLSv1.2, TLSv1.3."),
                    )
                })?
            }
            _ => return Err(SettingError::unrecognized(name)),
        }
        Ok(())
    }

    /// The value `SHOW name` prints, for the settings this struct holds and the fixed
    /// ones a PostgreSQL 15 server reports; `None` for an unknown name. Settings that
    /// depend on the served WAL (`wal_segment_size`) are answered by the walsender.
    pub fn show(&self, name: &str) -> Option<String> {
        let value = match name.to_ascii_lowercase().as_str() {
            "max_connections" => self.max_connections.to_string(),
            "superuser_reserved_connections" => self.superuser_reserved_connections.to_string(),
            "max_wal_senders" => self.max_wal_senders.to_string(),
            "max_replication_slots" => self.max_replication_slots.to_string(),
            "wal_sender_timeout" => {
                format_int(self.wal_sender_timeout.as_millis() as i64, Unit::Ms)
            }
            "authentication_timeout" => {
                format_int(self.authentication_timeout.as_secs() as i64, Unit::S)
            }
            "wal_keep_size" => format_int(self.wal_keep_size_mb as i64, Unit::Mb),
            "max_slot_wal_keep_size" => match self.max_slot_wal_keep_size_mb {
                -1 => "-1".to_string(),
                v => format_int(v, Unit::Mb),
            },
            "max_wal_size" => match self.max_wal_size_mb {
                None => "-1".to_string(),
                Some(v) => format_int(v as i64, Unit::Mb),
            },
            "checkpoint_timeout" => format_int(self.checkpoint_timeout.as_secs() as i64, Unit::S),
            "walstream.max_send_size" => format_int(self.max_send_size.into(), Unit::Bytes),
            "cluster_name" => self.cluster_name.clone(),
            "ssl" => if self.ssl.enabled { "on" } else { "off" }.to_string(),
            "ssl_cert_file" => self.ssl.cert_file.clone(),
            "ssl_key_file" => self.ssl.key_file.clone(),
            "ssl_ca_file" => self.ssl.ca_file.clone(),
            "ssl_min_protocol_version" => self.ssl.min_protocol_version.name().to_string(),
            "server_version" => SERVER_VERSION.to_string(),
            "server_version_num" => SERVER_VERSION_NUM.to_string(),
            "server_encoding" | "client_encoding" => "UTF8".to_string(),
            "integer_datetimes" | "standard_conforming_strings" => "on".to_string(),
            "data_directory_mode" => "0700".to_string(),
            "block_size" => "8192".to_string(),
            "wal_block_size" => "8192".to_string(),
            "wal_level" => "replica".to_string(),
            "hot_standby" => "on".to_string(),
            "datestyle" => "ISO, MDY".to_string(),
            "intervalstyle" => "postgres".to_string(),
            "timezone" => "UTC".to_string(),
            "transaction_read_only" | "default_transaction_read_only" => "off".to_string(),
            "in_hot_standby" => "off".to_string(),
            "lc_messages" | "lc_collate" | "lc_ctype" => "C".to_string(),
            _ => return None,
        };
        Some(value)
    }

    /// The error `SHOW name` gives for a name [`Settings::show`] does not know.
    pub fn unrecognized(name: &str) -> ErrorFields {
        SettingError::unrecognized(name).fields
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_parse_and_show_as_postgresql_does() {
        let mut s = Settings::default();
        assert_eq!(s.show("wal_sender_timeout").unwrap(), "1min");
        s.set("wal_sender_timeout", "90s").unwrap();
        assert_eq!(s.wal_sender_timeout, Duration::from_secs(90));
        assert_eq!(s.show("wal_sender_timeout").unwrap(), "90s");
        s.set("wal_sender_timeout", "1500").unwrap();
        assert_eq!(s.show("wal_sender_timeout").unwrap(), "1500ms");
        s.set("wal_sender_timeout", "0").unwrap();
        assert_eq!(s.show("wal_sender_timeout").unwrap(), "0");
        s.set("wal_keep_size", "1GB").unwrap();
        assert_eq!(s.wal_keep_size_mb, 1024);
        assert_eq!(s.show("wal_keep_size").unwrap(), "1GB");
        assert_eq!(s.show("max_send_size"), None);
        assert_eq!(s.show("walstream.max_send_size").unwrap(), "128kB");
        s.set("walstream.max_send_size", "1MB").unwrap();
        assert_eq!(s.max_send_size, 1 << 20);
        assert_eq!(s.show("max_wal_size").unwrap(), "-1");
        s.set("max_wal_size", "64MB").unwrap();
        assert_eq!(s.max_wal_size_mb, Some(64));
        assert!(s.set("max_wal_size", "1").is_err());
        s.set("checkpoint_timeout", "30s").unwrap();
        assert_eq!(s.show("checkpoint_timeout").unwrap(), "30s");
    }

    #[test]
    fn ssl_settings_parse_and_show_as_postgresql_does() {
        let mut s = Settings::default();
        assert_eq!(s.show("ssl").unwrap(), "off");
        assert_eq!(s.show("ssl_cert_file").unwrap(), "server.crt");
        assert_eq!(s.show("ssl_key_file").unwrap(), "server.key");
        assert_eq!(s.show("ssl_ca_file").unwrap(), "");
        assert_eq!(s.show("ssl_min_protocol_version").unwrap(), "TLSv1.2");
        s.set("ssl", "on").unwrap();
        s.set("ssl_min_protocol_version", "tlsv1.3").unwrap();
        assert_eq!(s.show("ssl_min_protocol_version").unwrap(), "TLSv1.3");
        // postgres -c ssl=maybe; postgres -c ssl_min_protocol_version=foo
        assert_eq!(
            s.set("ssl", "maybe").unwrap_err().to_string(),
            "parameter \"ssl\" requires a Boolean value"
        );
        let e = s.set("ssl_min_protocol_version", "foo").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid value for parameter \"ssl_min_protocol_version\": \"foo\""
        );
        assert_eq!(
            e.fields.hint.as_deref(),
            Some("Available values: TLSv1, TLSv1.1, TLSv1.2, TLSv1.3.")
        );
    }

    #[test]
    fn errors_have_postgresql_texts() {
        let mut s = Settings::default();
        let e = s.set("nosuch", "1").unwrap_err();
        assert_eq!(e.fields.message, "unrecognized configuration parameter \"nosuch\"");
        assert_eq!(e.fields.code, "42704");
        let e = s.set("wal_sender_timeout", "10 parsecs").unwrap_err();
        assert_eq!(
            e.fields.message,
            "invalid value for parameter \"wal_sender_timeout\": \"10 parsecs\""
        );
        assert_eq!(e.fields.hint.as_deref(), Some(TIME_HINT));
        let e = s.set("max_wal_senders", "-1").unwrap_err();
        assert_eq!(
            e.fields.message,
            "-1 is outside the valid range for parameter \"max_wal_senders\" (0 .. 262143)"
        );
        assert!(s.set("max_wal_senders", "abc").is_err());
        assert!(s.set("walstream.max_send_size", "10000").is_err());
    }
}
