//! libpq-compatible connection strings: `key=value` lists and `postgresql://` URIs, the
//! `PG*` environment defaults, and the `~/.pgpass` password file (`interfaces/libpq/fe-connect.c`).
//!
//! Only TCP is supported: a host naming a Unix-domain socket directory is an error.

mod lexer;
mod pgpass;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

pub use pgpass::{fuzz_pgpass_line, pgpass_lookup};

/// The keywords libpq 15 knows (`fe-connect.c: PQconninfoOptions`).
const KNOWN_KEYWORDS: &[&str] = &[
    "service",
    "user",
    "password",
    "passfile",
    "channel_binding",
    "connect_timeout",
    "dbname",
    "host",
    "hostaddr",
    "port",
    "client_encoding",
    "options",
    "application_name",
    "fallback_application_name",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "sslmode",
    "sslcompression",
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslrootcert",
    "sslcrl",
    "sslcrldir",
    "sslsni",
    "requirepeer",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "gssencmode",
    "krbsrvname",
    "gsslib",
    "replication",
    "target_session_attrs",
];

/// Keywords with a field of their own in [`ConnInfo`]; the others land in `options`.
const FIELD_KEYWORDS: &[&str] = &[
    "host",
    "port",
    "user",
    "password",
    "dbname",
    "application_name",
    "connect_timeout",
    "sslmode",
    "passfile",
];

/// PostgreSQL's default port (`DEF_PGPORT`).
pub const DEFAULT_PORT: u16 = 5432;

fn is_known_keyword(key: &str) -> bool {
    KNOWN_KEYWORDS.contains(&key)
}

/// A connection string that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnInfoError {
    /// A syntax error, with libpq's text (e.g. `missing "=" after "host" in connection info string`).
    #[error("{0}")]
    Syntax(String),
    /// A keyword libpq does not know.
    #[error("invalid connection option \"{0}\"")]
    InvalidOption(String),
    /// A value libpq refuses for a keyword, with libpq's text.
    #[error("{0}")]
    InvalidValue(String),
    /// A NUL byte, which no libpq string can hold.
    #[error("connection info string contains a NUL byte")]
    Nul,
    /// A host starting with `/` or `@`: a Unix-domain socket directory.
    #[error("Unix-domain sockets are not supported")]
    UnixSocket,
    /// More than one host (`host=a,b` or a URI listing several).
    #[error("multiple hosts are not supported")]
    MultipleHosts,
    /// No user given and the operating system's user name is unknown.
    #[error("could not look up local user name")]
    NoUser,
}

/// `sslmode`: whether TLS is tried, preferred or required.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// Never TLS.
    Disable,
    /// Plain first; TLS only if the server insists.
    Allow,
    /// TLS first when the server offers it (the default).
    #[default]
    Prefer,
    /// TLS required.
    Require,
    /// TLS required, and the server certificate checked against a CA.
    VerifyCa,
    /// TLS required, CA and host name checked.
    VerifyFull,
}

impl SslMode {
    /// The keyword value, as libpq spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// Whether a connection without TLS is refused.
    pub fn requires_tls(self) -> bool {
        matches!(self, SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

impl FromStr for SslMode {
    type Err = ConnInfoError;

    fn from_str(s: &str) -> Result<SslMode, ConnInfoError> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            // fe-connect.c: connectOptions2
            _ => {
                return Err(ConnInfoError::InvalidValue(format!("invalid sslmode value: \"{s}\"")))
            }
        })
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed connection string with libpq's defaults filled in.
///
/// `Display` writes the `key='value'` form, password included (it parses back to an equal
/// value); `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnInfo {
    /// Host name or address (TCP only); `localhost` by default.
    pub host: String,
    /// TCP port; 5432 by default.
    pub port: u16,
    /// Role name; the operating system user by default.
    pub user: String,
    /// Password; when `None`, the password file is read when the server asks for one.
    pub password: Option<String>,
    /// Database name as given (`dbname` or `PGDATABASE`); see [`ConnInfo::database`].
    pub dbname: Option<String>,
    /// `application_name`.
    pub application_name: Option<String>,
    /// `connect_timeout`: the limit for connecting and authenticating (at least 2 s, as libpq).
    pub connect_timeout: Option<Duration>,
    /// `sslmode`.
    pub sslmode: SslMode,
    /// The password file (`passfile`, `PGPASSFILE`, else `~/.pgpass`).
    pub passfile: Option<PathBuf>,
    /// Every other libpq keyword given, in order of first appearance (last value wins).
    pub options: Vec<(String, String)>,
}

impl ConnInfo {
    /// Parses `s` with defaults from the process environment (`PGHOST`, `PGPORT`, `PGUSER`,
    /// `PGPASSWORD`, `PGDATABASE`, `PGAPPNAME`, `PGCONNECT_TIMEOUT`, `PGSSLMODE`,
    /// `PGPASSFILE`) and the operating system user name and home directory.
    ///
    /// # Errors
    /// See [`ConnInfo::parse_with_env`].
    pub fn parse(s: &str) -> Result<ConnInfo, ConnInfoError> {
        ConnInfo::parse_with_env(s, &os_env)
    }

    /// Parses `s`, taking defaults from `env`: `PG*` variables, plus `USER` (the default
    /// user name) and `HOME` (where `.pgpass` is). [`ConnInfo::parse`] answers `USER` and
    /// `HOME` from the password database as libpq does.
    ///
    /// # Errors
    /// [`ConnInfoError`] with libpq's text for a syntax error, an unknown keyword, a bad
    /// port, timeout or sslmode, a socket directory, several hosts, or no user name.
    pub fn parse_with_env(
        s: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ConnInfo, ConnInfoError> {
        let mut given: Vec<(String, String)> = Vec::new();
        for (key, value) in lexer::split(s)? {
            if !is_known_keyword(&key) {
                return Err(ConnInfoError::InvalidOption(key));
            }
            match given.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = value,
                None => given.push((key, value)),
            }
        }
        resolve(&given, env)
    }

    /// The database name sent at startup for a non-physical connection: `dbname`, else
    /// the user name (`postmaster.c: ProcessStartupPacket`).
    pub fn database(&self) -> &str {
        self.dbname.as_deref().unwrap_or(&self.user)
    }

    /// The value of a keyword kept in `options`.
    pub fn option(&self, key: &str) -> Option<&str> {
        self.options.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The password to send: the given one, else the password file's entry for this host,
    /// port, `database` and user (`fe-connect.c: connectOptions2`).
    pub fn password_for(&self, database: &str) -> Option<String> {
        self.password.clone().or_else(|| {
            let path = self.passfile.as_deref()?;
            pgpass_lookup(path, &self.host, self.port, database, &self.user)
        })
    }

    /// `channel_binding` (`PGCHANNELBINDING`; `prefer` by default): `disable`, `prefer`
    /// or `require`, checked at parse time.
    pub fn channel_binding(&self) -> &str {
        self.option("channel_binding").unwrap_or("prefer")
    }

    /// The `key='value'` form with the password replaced by `********`, for logs.
    pub fn redacted(&self) -> String {
        let mut shown = self.clone();
        if shown.password.is_some() {
            shown.password = Some("********".into());
        }
        shown.to_string()
    }
}

impl fmt::Debug for ConnInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnInfo({})", self.redacted())
    }
}

/// `conninfo` pointed at another server: its keywords as given (nothing filled in from
/// this process's environment), without `host`, `hostaddr` and `port`, then `host` and
/// `port` — what a failover manager writes into a standby's `primary_conninfo` so it
/// keeps its user, password file and `application_name`.
///
/// # Errors
/// libpq's syntax errors for `conninfo`.
pub fn retarget(conninfo: &str, host: &str, port: u16) -> Result<String, ConnInfoError> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (key, value) in lexer::split(conninfo)? {
        if matches!(key.as_str(), "host" | "hostaddr" | "port") {
            continue;
        }
        match pairs.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => pairs.push((key, value)),
        }
    }
    pairs.push(("host".into(), host.into()));
    pairs.push(("port".into(), port.to_string()));
    let mut out = String::new();
    for (key, value) in pairs {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&key);
        out.push_str("='");
        for c in value.chars() {
            if matches!(c, '\'' | '\\') {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('\'');
    }
    Ok(out)
}

impl fmt::Display for ConnInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let port = self.port.to_string();
        let timeout = self.connect_timeout.map(|t| t.as_secs().to_string());
        let passfile = self.passfile.as_ref().map(|p| p.to_string_lossy().into_owned());
        let fields = [
            ("host", Some(self.host.as_str())),
            ("port", Some(port.as_str())),
            ("user", Some(self.user.as_str())),
            ("password", self.password.as_deref()),
            ("dbname", self.dbname.as_deref()),
            ("application_name", self.application_name.as_deref()),
            ("connect_timeout", timeout.as_deref()),
            ("sslmode", Some(self.sslmode.as_str())),
            ("passfile", passfile.as_deref()),
        ];
        let mut sep = "";
        let present = fields.iter().filter_map(|(k, v)| v.map(|v| (*k, v)));
        let others = self.options.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        for (key, value) in present.chain(others) {
            write!(f, "{sep}{key}='")?;
            for c in value.chars() {
                if matches!(c, '\'' | '\\') {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
            f.write_str("'")?;
            sep = " ";
        }
        Ok(())
    }
}

/// The value of a field: given (even empty) beats the environment; empty means unset.
fn pick(
    given: &[(String, String)],
    env: &dyn Fn(&str) -> Option<String>,
    key: &str,
    var: &str,
) -> Option<String> {
    let value = match given.iter().find(|(k, _)| k == key) {
        Some((_, v)) => Some(v.clone()),
        None => env(var),
    };
    value.filter(|v| !v.is_empty())
}

// fe-connect.c: conninfo_add_defaults, connectOptions2
fn resolve(
    given: &[(String, String)],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ConnInfo, ConnInfoError> {
    let host = pick(given, env, "host", "PGHOST").unwrap_or_else(|| "localhost".into());
    if host.starts_with('/') || host.starts_with('@') {
        return Err(ConnInfoError::UnixSocket);
    }
    if host.contains(',') {
        return Err(ConnInfoError::MultipleHosts);
    }
    let port = match pick(given, env, "port", "PGPORT") {
        Some(p) => parse_port(&p)?,
        None => DEFAULT_PORT,
    };
    let user = pick(given, env, "user", "PGUSER")
        .or_else(|| env("USER").filter(|u| !u.is_empty()))
        .ok_or(ConnInfoError::NoUser)?;
    let connect_timeout = match pick(given, env, "connect_timeout", "PGCONNECT_TIMEOUT") {
        Some(t) => parse_timeout(&t)?,
        None => None,
    };
    let sslmode = match pick(given, env, "sslmode", "PGSSLMODE") {
        Some(m) => m.parse()?,
        None => SslMode::default(),
    };
    // fe-connect.c: connectOptions2
    let mut options: Vec<(String, String)> =
        given.iter().filter(|(k, _)| !FIELD_KEYWORDS.contains(&k.as_str())).cloned().collect();
    if let Some(cb) = pick(given, env, "channel_binding", "PGCHANNELBINDING") {
        if !matches!(cb.as_str(), "disable" | "prefer" | "require") {
            return Err(ConnInfoError::InvalidValue(format!(
                "invalid channel_binding value: \"{cb}\""
            )));
        }
        if !options.iter().any(|(k, _)| k == "channel_binding") {
            options.push(("channel_binding".into(), cb));
        }
    }
    let mut versions = [None, None];
    for (i, (key, var)) in [
        ("ssl_min_protocol_version", "PGSSLMINPROTOCOLVERSION"),
        ("ssl_max_protocol_version", "PGSSLMAXPROTOCOLVERSION"),
    ]
    .into_iter()
    .enumerate()
    {
        let Some(v) = pick(given, env, key, var) else { continue };
        let Some(rank) = tls_version_rank(&v) else {
            return Err(ConnInfoError::InvalidValue(format!("invalid {key} value: \"{v}\"")));
        };
        versions[i] = Some(rank);
        if !options.iter().any(|(k, _)| k == key) {
            options.push((key.into(), v));
        }
    }
    if let [Some(min), Some(max)] = versions {
        if min > max {
            return Err(ConnInfoError::InvalidValue("invalid SSL protocol version range".into()));
        }
    }
    let passfile = pick(given, env, "passfile", "PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".pgpass")));
    Ok(ConnInfo {
        host,
        port,
        user,
        password: pick(given, env, "password", "PGPASSWORD"),
        dbname: pick(given, env, "dbname", "PGDATABASE"),
        application_name: pick(given, env, "application_name", "PGAPPNAME"),
        connect_timeout,
        sslmode,
        passfile,
        options,
    })
}

/// The order of a TLS protocol version as libpq names it (`fe-connect.c:
/// sslVerifyProtocolVersion`, any case): TLSv1 = 10 .. TLSv1.3 = 13.
pub(crate) fn tls_version_rank(v: &str) -> Option<u8> {
    ["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"]
        .iter()
        .position(|n| n.eq_ignore_ascii_case(v))
        .map(|i| 10 + i as u8)
}

// fe-connect.c: connectDBStart ("invalid port number")
fn parse_port(s: &str) -> Result<u16, ConnInfoError> {
    if s.contains(',') {
        return Err(ConnInfoError::MultipleHosts);
    }
    parse_c_int(s)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .ok_or_else(|| ConnInfoError::InvalidValue(format!("invalid port number: \"{s}\"")))
}

// fe-connect.c: pqConnectDBComplete (a timeout of 1 s becomes 2 s; 0 or less is none)
fn parse_timeout(s: &str) -> Result<Option<Duration>, ConnInfoError> {
    let secs = parse_c_int(s).ok_or_else(|| {
        ConnInfoError::InvalidValue(format!(
            "invalid integer value \"{s}\" for connection option \"connect_timeout\""
        ))
    })?;
    Ok(u64::try_from(secs).ok().filter(|s| *s > 0).map(|s| Duration::from_secs(s.max(2))))
}

/// An `int` as libpq's `parse_int_param` reads it: optional whitespace around a decimal.
fn parse_c_int(s: &str) -> Option<i32> {
    s.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')).parse().ok()
}

/// The home directory libpq looks in for `.pgpass` and `.postgresql/` (`pqGetHomeDirectory`).
pub(crate) fn home_dir() -> Option<String> {
    os_env("HOME")
}

/// The process environment, with `USER` and `HOME` from the password database first,
/// as libpq's `pg_fe_getauthname` and `pqGetHomeDirectory` do.
fn os_env(name: &str) -> Option<String> {
    match name {
        "USER" => os_user_name().or_else(|| std::env::var("USER").ok()),
        "HOME" => std::env::var("HOME").ok().or_else(os_home_dir),
        _ => std::env::var(name).ok(),
    }
}

fn os_user_name() -> Option<String> {
    passwd_entry(|pw| pw.pw_name)
}

fn os_home_dir() -> Option<String> {
    passwd_entry(|pw| pw.pw_dir)
}

/// One string field of `getpwuid_r(geteuid())`.
fn passwd_entry(field: fn(&libc::passwd) -> *mut libc::c_char) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 4096];
    // SAFETY: an all-zero passwd (null pointers, zero ids) is a valid value to overwrite.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer refers to live, writable memory of the stated size.
    let rc = unsafe {
        libc::getpwuid_r(libc::geteuid(), &mut pw, buf.as_mut_ptr(), buf.len(), &mut result)
    };
    if rc != 0 || result.is_null() {
        return None;
    }
    let ptr = field(&pw);
    if ptr.is_null() {
        return None;
    }
    // SAFETY: getpwuid_r succeeded, so the field points to a NUL-terminated string in `buf`.
    let text = unsafe { std::ffi::CStr::from_ptr(ptr) };
    Some(text.to_string_lossy().into_owned())
}

/// Fuzz entry point: parses arbitrary bytes as a connection string (with a fixed
/// environment that reads no files) and, when it parses, checks the round trip.
pub fn fuzz_conninfo(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let env = |k: &str| (k == "USER").then(|| "fuzz".to_string());
    if let Ok(info) = ConnInfo::parse_with_env(s, &env) {
        let again = ConnInfo::parse_with_env(&info.to_string(), &env);
        assert_eq!(again.as_ref(), Ok(&info), "conninfo round trip");
    }
}
