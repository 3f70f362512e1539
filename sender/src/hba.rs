//! pg_hba.conf rules: which authentication method a connection gets.
//!
//! [`HbaFile::parse`] reads PostgreSQL's syntax (`libpq/hba.c: tokenize_auth_file`,
//! `parse_hba_line`) and [`HbaFile::find`] picks the first matching rule as `check_hba`
//! does. walstream has neither GSSAPI nor Unix sockets, so:
//! - `host` and `hostnogssenc` rules match every TCP connection, `hostssl` encrypted ones
//!   and `hostnossl` plain ones; `hostgssenc` and `local` rules are read but never match.
//! - Methods other than `trust`, `reject`, `password`, `md5`, `scram-sha-256` and `cert`
//!   are refused with PostgreSQL's text for a build without them
//!   (`invalid authentication method "ldap": not supported by this build`).
//! - Options after the method (`name=value`) are checked as PostgreSQL checks them for these
//!   methods (name known, valid for the method, `clientcert` and `clientname` only on
//!   `hostssl`) and kept in [`HbaRule::options`]; `clientcert` and `clientname` are acted
//!   on ([`HbaRule::clientcert`], [`HbaRule::clientname_dn`]). `map` (pg_ident.conf) is
//!   refused.
//! - Addresses are IP addresses with a CIDR suffix or a separate netmask column; host
//!   names are refused (`invalid IP address "db.example": host names are not supported`).
//!   `samehost` and `samenet` match loopback clients only (knowing the host's own
//!   addresses would need interface enumeration).
//! - Roles have no group membership: `+name` and `samerole`/`samegroup` match only the
//!   role itself (PostgreSQL counts a role as a member of itself).
//! - `@file` inclusion is refused.
//!
//! An IPv4-mapped IPv6 client (`::ffff:127.0.0.1`, what a dual-stack socket reports) is
//! matched and reported as its IPv4 address.

mod parse;
mod tokenize;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use walstream_protocol::wire::{sqlstate, ErrorFields};

pub use tokenize::HbaToken;

/// The authentication methods walstream implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    /// Accept without a password.
    Trust,
    /// Refuse (`pg_hba.conf rejects connection ...`).
    Reject,
    /// Cleartext password, checked against the stored verifier.
    Password,
    /// MD5 challenge, or SCRAM when the role's verifier is SCRAM (`auth.c: CheckPWChallengeAuth`).
    Md5,
    /// SCRAM-SHA-256.
    ScramSha256,
    /// The client certificate's name is the user name (`hostssl` only).
    Cert,
}

impl AuthMethod {
    /// The name pg_hba.conf uses (`hba.c: hba_authname`).
    pub fn name(self) -> &'static str {
        match self {
            AuthMethod::Trust => "trust",
            AuthMethod::Reject => "reject",
            AuthMethod::Password => "password",
            AuthMethod::Md5 => "md5",
            AuthMethod::ScramSha256 => "scram-sha-256",
            AuthMethod::Cert => "cert",
        }
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The connection type column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnType {
    /// `local`: Unix-domain sockets (never matches here).
    Local,
    /// `host`: any TCP connection.
    Host,
    /// `hostssl`: TLS connections.
    HostSsl,
    /// `hostnossl`: TCP without TLS.
    HostNoSsl,
    /// `hostgssenc`: GSSAPI-encrypted connections (never matches).
    HostGssEnc,
    /// `hostnogssenc`: TCP without GSSAPI encryption.
    HostNoGssEnc,
}

impl ConnType {
    /// Whether a TCP connection, encrypted by TLS or not, can match (`hba.c: check_hba`).
    fn matches_tcp(self, ssl: bool) -> bool {
        match self {
            ConnType::Host | ConnType::HostNoGssEnc => true,
            ConnType::HostSsl => ssl,
            ConnType::HostNoSsl => !ssl,
            ConnType::Local | ConnType::HostGssEnc => false,
        }
    }
}

/// What a connection asking for a rule is: who, to what, and whether encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnInfo<'a> {
    /// The user name.
    pub user: &'a str,
    /// The database name.
    pub database: &'a str,
    /// A physical replication connection (`replication=true`).
    pub replication: bool,
    /// Encrypted by TLS.
    pub ssl: bool,
}

impl ConnInfo<'_> {
    /// What PostgreSQL's messages say of the encryption (`auth.c: ClientAuthentication`).
    fn encryption(&self) -> &'static str {
        if self.ssl {
            "SSL encryption"
        } else {
            "no encryption"
        }
    }
}

/// The `clientcert` option (`hba.c: ClientCertMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientCert {
    /// No certificate needed.
    #[default]
    Off,
    /// A certificate that chains to `ssl_ca_file`.
    VerifyCa,
    /// That, and its name is the user's (as `cert` checks it).
    VerifyFull,
}

/// The address column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrMatch {
    /// `all`.
    All,
    /// `samehost`: here, loopback clients only.
    SameHost,
    /// `samenet`: here, loopback clients only.
    SameNet,
    /// An address and a mask of the same family; matches when the masked bits agree.
    Net {
        /// The address as written.
        addr: IpAddr,
        /// The mask, from the CIDR suffix or the netmask column.
        mask: IpAddr,
    },
}

impl AddrMatch {
    /// Whether `client` matches (`hba.c: check_ip`: families must agree).
    fn matches(&self, client: IpAddr) -> bool {
        match *self {
            AddrMatch::All => true,
            AddrMatch::SameHost | AddrMatch::SameNet => client.is_loopback(),
            AddrMatch::Net { addr, mask } => match (addr, mask, client) {
                (IpAddr::V4(a), IpAddr::V4(m), IpAddr::V4(c)) => {
                    (u32::from(a) ^ u32::from(c)) & u32::from(m) == 0
                }
                (IpAddr::V6(a), IpAddr::V6(m), IpAddr::V6(c)) => {
                    (u128::from(a) ^ u128::from(c)) & u128::from(m) == 0
                }
                _ => false,
            },
        }
    }
}

/// One parsed line of pg_hba.conf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HbaRule {
    /// The line number (of the first line, for a continued line).
    pub line_number: usize,
    /// The line as written (continuations joined).
    pub raw_line: String,
    /// The connection type.
    pub conn_type: ConnType,
    /// The database column's tokens.
    pub databases: Vec<HbaToken>,
    /// The user column's tokens.
    pub users: Vec<HbaToken>,
    /// The address match; `None` for `local` lines.
    pub address: Option<AddrMatch>,
    /// The method.
    pub method: AuthMethod,
    /// `name=value` options after the method, as written.
    pub options: Vec<(String, String)>,
    /// `clientcert` (`verify-full` for `cert`).
    pub clientcert: ClientCert,
    /// `clientname=DN`: the certificate's whole subject (RFC 2253) is the name, not its CN.
    pub clientname_dn: bool,
}

impl HbaRule {
    /// Whether this rule applies to a TCP connection from `client`, encrypted when `ssl`
    /// (`hba.c: check_hba`).
    pub fn matches(&self, client: IpAddr, conn: &ConnInfo<'_>) -> bool {
        let ConnInfo { user, database, replication, ssl } = *conn;
        self.conn_type.matches_tcp(ssl)
            && self.address.is_some_and(|a| a.matches(canonical(client)))
            && check_db(&self.databases, database, user, replication)
            && check_role(&self.users, user)
    }
}

/// `hba.c: check_db`. A physical replication connection matches only `replication`.
fn check_db(tokens: &[HbaToken], database: &str, user: &str, replication: bool) -> bool {
    tokens.iter().any(|t| {
        if replication {
            t.is_keyword("replication")
        } else if t.is_keyword("all") {
            true
        } else if t.is_keyword("sameuser") || t.is_keyword("samerole") || t.is_keyword("samegroup")
        {
            database == user
        } else if t.is_keyword("replication") {
            false
        } else {
            t.matches(database)
        }
    })
}

/// `hba.c: check_role`. `+group` matches the role named `group` only (no memberships).
fn check_role(tokens: &[HbaToken], user: &str) -> bool {
    tokens.iter().any(|t| match t.text.strip_prefix('+') {
        Some(group) if !t.quoted => group == user,
        _ => t.matches(user) || t.is_keyword("all"),
    })
}

/// The IPv4 address inside an IPv4-mapped IPv6 address, else the address.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        IpAddr::V4(_) => addr,
    }
}

/// Why a pg_hba.conf could not be used.
#[derive(Debug, thiserror::Error)]
pub enum HbaError {
    /// The file could not be read.
    #[error("could not open configuration file \"{}\": {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line is malformed; `message` is PostgreSQL's text.
    #[error("{message} (line {line_number} of pg_hba.conf)")]
    Line {
        /// The line number.
        line_number: usize,
        /// What is wrong, as PostgreSQL says it.
        message: String,
        /// PostgreSQL's hint, where it gives one.
        hint: Option<&'static str>,
    },
    /// No rules at all (`hba.c: load_hba`).
    #[error("configuration file \"pg_hba.conf\" contains no entries")]
    NoEntries,
}

/// A parsed pg_hba.conf: rules in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HbaFile {
    rules: Vec<HbaRule>,
}

/// The rules [`HbaFile::loopback_trust`] holds.
pub const LOOPBACK_TRUST: &str = "\
host all all 127.0.0.0/8 trust
host all all ::1/128 trust
host replication all 127.0.0.0/8 trust
host replication all ::1/128 trust
";

impl HbaFile {
    /// Parses pg_hba.conf text. Like PostgreSQL, the whole file is refused if any line is bad.
    ///
    /// # Errors
    /// [`HbaError::Line`] for the first bad line, with PostgreSQL's message;
    /// [`HbaError::NoEntries`] for a file with no rules.
    pub fn parse(text: &str) -> Result<HbaFile, HbaError> {
        let lines = tokenize::tokenize(text).map_err(|e| HbaError::Line {
            line_number: e.line_number,
            message: e.message,
            hint: None,
        })?;
        let rules = lines
            .iter()
            .map(|line| {
                parse::parse_line(line).map_err(|e| HbaError::Line {
                    line_number: line.line_number,
                    message: e.message,
                    hint: e.hint,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if rules.is_empty() {
            return Err(HbaError::NoEntries);
        }
        Ok(HbaFile { rules })
    }

    /// Reads and parses a file.
    ///
    /// # Errors
    /// [`HbaError::Io`] when it cannot be read (or is not UTF-8), else as [`HbaFile::parse`].
    pub fn load(path: &Path) -> Result<HbaFile, HbaError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| HbaError::Io { path: path.to_owned(), source })?;
        HbaFile::parse(&text)
    }

    /// The rules used without a pg_hba.conf: trust from 127.0.0.0/8 and ::1 for every
    /// database and for replication; everyone else finds no entry.
    pub fn loopback_trust() -> HbaFile {
        // A constant text, tested to parse; an empty list would reject everyone.
        HbaFile::parse(LOOPBACK_TRUST).unwrap_or(HbaFile { rules: Vec::new() })
    }

    /// The rules in file order.
    pub fn rules(&self) -> &[HbaRule] {
        &self.rules
    }

    /// The first rule matching a TCP connection (`hba.c: check_hba`); `None` is an implicit
    /// reject (answer with [`no_entry_error`]). `conn.replication` means a physical
    /// replication connection (`replication=true`); a `replication=database` connection
    /// passes `false` and its database name.
    pub fn find(&self, client: IpAddr, conn: &ConnInfo<'_>) -> Option<&HbaRule> {
        self.rules.iter().find(|r| r.matches(client, conn))
    }
}

/// The FATAL for a connection no rule matches (`auth.c: ClientAuthentication`, uaImplicitReject).
pub fn no_entry_error(client: IpAddr, conn: &ConnInfo<'_>) -> ErrorFields {
    let host = canonical(client);
    let (user, database, enc) = (conn.user, conn.database, conn.encryption());
    let message = if conn.replication {
        format!(
            "no pg_hba.conf entry for replication connection from host \"{host}\", user \"{user}\", {enc}"
        )
    } else {
        format!(
            "no pg_hba.conf entry for host \"{host}\", user \"{user}\", database \"{database}\", {enc}"
        )
    };
    ErrorFields::fatal(sqlstate::INVALID_AUTHORIZATION_SPECIFICATION, message)
}

/// The FATAL for a connection whose rule is `reject` (`auth.c: ClientAuthentication`, uaReject).
pub fn reject_error(client: IpAddr, conn: &ConnInfo<'_>) -> ErrorFields {
    let host = canonical(client);
    let (user, database, enc) = (conn.user, conn.database, conn.encryption());
    let message = if conn.replication {
        format!(
            "pg_hba.conf rejects replication connection for host \"{host}\", user \"{user}\", {enc}"
        )
    } else {
        format!(
            "pg_hba.conf rejects connection for host \"{host}\", user \"{user}\", database \"{database}\", {enc}"
        )
    };
    ErrorFields::fatal(sqlstate::INVALID_AUTHORIZATION_SPECIFICATION, message)
}

/// Fuzz entry point: parse arbitrary bytes (lossily decoded) as pg_hba.conf and, when that
/// works, look up a few connections. Must never panic.
pub fn fuzz_hba(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(file) = HbaFile::parse(&text) {
        for client in [IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)] {
            for replication in [false, true] {
                for ssl in [false, true] {
                    let conn =
                        ConnInfo { user: "postgres", database: "postgres", replication, ssl };
                    let _ = file.find(client, &conn);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
