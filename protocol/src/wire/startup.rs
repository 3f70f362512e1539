//! The first packet of a connection, which has no type byte: StartupMessage, SSLRequest,
//! GSSENCRequest and CancelRequest, checked as `postmaster.c: ProcessStartupPacket` does.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::backend::BackendMessage;
use super::codec::{put_cstr, read_u32, write_message, Reader};
use super::error_fields::Severity;
use super::{
    WireError, CANCEL_REQUEST_CODE, MAX_STARTUP_PACKET_LENGTH, NEGOTIATE_GSS_CODE,
    NEGOTIATE_SSL_CODE, PROTOCOL_3_0,
};

/// A packet a client sends before any typed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket {
    /// `SSLRequest` (80877103): the server answers one byte, `S` or `N`.
    SslRequest,
    /// `GSSENCRequest` (80877104): the server answers one byte, `G` or `N`.
    GssEncRequest,
    /// `CancelRequest` (80877102): never answered; the server closes the socket.
    CancelRequest {
        /// The target backend's process id, from its BackendKeyData.
        pid: i32,
        /// The target backend's secret key, from its BackendKeyData.
        key: u32,
    },
    /// `StartupMessage`.
    Startup(StartupMessage),
}

/// A StartupMessage: protocol version and parameters, in the order sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartupMessage {
    /// Major protocol version; always 3 once parsed.
    pub version_major: u16,
    /// Minor protocol version; PostgreSQL 15 supports 0 and negotiates anything higher down.
    pub version_minor: u16,
    /// `(name, value)` pairs: `user`, `database`, `replication`, `options`, `_pq_.*`
    /// protocol options and run-time parameters such as `application_name`.
    pub params: Vec<(String, String)>,
}

/// What the `replication` startup parameter asks for (`postmaster.c: ProcessStartupPacket`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicationMode {
    /// No `replication` parameter, or a false boolean: an ordinary backend.
    Off,
    /// A true boolean: a physical replication walsender.
    Physical,
    /// `database`: a logical replication walsender connected to a database.
    Logical,
}

impl ReplicationMode {
    /// Interprets a `replication` value: `database`, or a boolean as `parse_bool` reads it.
    ///
    /// # Errors
    /// [`WireError::InvalidReplicationParameter`] (22023) for anything else.
    pub fn from_param(value: &str) -> Result<ReplicationMode, WireError> {
        if value == "database" {
            return Ok(ReplicationMode::Logical);
        }
        match parse_bool(value) {
            Some(true) => Ok(ReplicationMode::Physical),
            Some(false) => Ok(ReplicationMode::Off),
            None => Err(WireError::InvalidReplicationParameter(value.to_owned())),
        }
    }
}

/// PostgreSQL's boolean spelling: any case-insensitive prefix of `true`, `false`, `yes`,
/// `no`, at least two letters of `on`/`off`, or exactly `1`/`0` (`utils/adt/bool.c: parse_bool_with_len`).
fn parse_bool(value: &str) -> Option<bool> {
    let v = value.to_ascii_lowercase();
    let prefix_of = |word: &str| !v.is_empty() && word.starts_with(v.as_str());
    match v.as_bytes().first()? {
        b't' if prefix_of("true") => Some(true),
        b'f' if prefix_of("false") => Some(false),
        b'y' if prefix_of("yes") => Some(true),
        b'n' if prefix_of("no") => Some(false),
        b'o' if v.len() >= 2 && prefix_of("on") => Some(true),
        b'o' if v.len() >= 2 && prefix_of("off") => Some(false),
        b'1' if v.len() == 1 => Some(true),
        b'0' if v.len() == 1 => Some(false),
        _ => None,
    }
}

/// `postinit.c: pg_split_opts`: words separated by unescaped whitespace, `\\x` is `x`.
fn split_opts(options: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut chars = options.chars().peekable();
    loop {
        while chars.peek().is_some_and(char::is_ascii_whitespace) {
            chars.next();
        }
        if chars.peek().is_none() {
            return words;
        }
        let mut word = String::new();
        while let Some(c) = chars.next() {
            match c {
                c if c.is_ascii_whitespace() => break,
                '\\' => {
                    if let Some(n) = chars.next() {
                        word.push(n);
                    }
                }
                c => word.push(c),
            }
        }
        words.push(word);
    }
}

/// Parses the first packet of a connection off the front of `buf`.
///
/// `Ok(None)` when the packet is not complete yet. This is the fuzz entry point for the
/// startup phase.
///
/// # Errors
/// In PostgreSQL's order: [`WireError::InvalidStartupLength`] (length word below 8 or
/// body above 10000 bytes), [`WireError::InvalidRequestLength`] (a cancel request of
/// the wrong size), [`WireError::UnsupportedProtocol`] (major version not 3),
/// [`WireError::InvalidReplicationParameter`], [`WireError::StartupLayout`] (no
/// terminator as last byte), [`WireError::InvalidUtf8`] and [`WireError::NoUserName`].
pub fn parse_startup(buf: &mut BytesMut) -> Result<Option<StartupPacket>, WireError> {
    let Some(len) = read_u32(buf) else {
        return Ok(None);
    };
    // postmaster.c: ProcessStartupPacket — the length word counts itself
    if len < 8 || len - 4 > MAX_STARTUP_PACKET_LENGTH {
        return Err(WireError::InvalidStartupLength { len });
    }
    let total = len as usize;
    if buf.len() < total {
        return Ok(None);
    }
    let mut body = buf.split_to(total).freeze();
    body.advance(4);
    let code = body.get_u32();
    let request_len = |request: &'static str, want: u32| {
        if len == want {
            Ok(())
        } else {
            Err(WireError::InvalidRequestLength { request, len })
        }
    };
    match code {
        CANCEL_REQUEST_CODE => {
            request_len("cancel request", 16)?;
            Ok(Some(StartupPacket::CancelRequest { pid: body.get_i32(), key: body.get_u32() }))
        }
        // postmaster.c: ProcessStartupPacket looks only at the code of these two; bytes
        // after it inside the packet are read and ignored (checked live: an SSLRequest
        // of 12 or 16 bytes is answered `N` and the startup goes on).
        NEGOTIATE_SSL_CODE => Ok(Some(StartupPacket::SslRequest)),
        NEGOTIATE_GSS_CODE => Ok(Some(StartupPacket::GssEncRequest)),
        version => parse_startup_message(version, body).map(|m| Some(StartupPacket::Startup(m))),
    }
}

fn parse_startup_message(version: u32, body: Bytes) -> Result<StartupMessage, WireError> {
    let (major, minor) = ((version >> 16) as u16, (version & 0xffff) as u16);
    if major != 3 {
        return Err(WireError::UnsupportedProtocol { major, minor });
    }
    let message =
        StartupMessage { version_major: major, version_minor: minor, params: parse_params(body)? };
    match message.param("user") {
        Some(user) if !user.is_empty() => Ok(message),
        _ => Err(WireError::NoUserName),
    }
}

/// `name\0value\0` pairs up to a lone NUL that must be the packet's last byte.
fn parse_params(body: Bytes) -> Result<Vec<(String, String)>, WireError> {
    let mut r = Reader::new(0, body);
    let mut params = Vec::new();
    loop {
        let name = r.cstr_bytes().map_err(|_| WireError::StartupLayout)?;
        if name.is_empty() {
            return if r.remaining() == 0 { Ok(params) } else { Err(WireError::StartupLayout) };
        }
        let value = r.cstr_bytes().map_err(|_| WireError::StartupLayout)?;
        let name = utf8(name)?;
        // guc.c: check_application_name — any bytes, each outside printable ASCII
        // replaced by `?` (pg_clean_ascii), valid UTF-8 or not.
        let value = if name == "application_name" { clean_ascii(&value) } else { utf8(value)? };
        if name == "replication" {
            ReplicationMode::from_param(&value)?;
        }
        params.push((name, value));
    }
}

/// `string.c: pg_clean_ascii` (PostgreSQL 15): every byte outside 32..=126 becomes `?`.
pub fn clean_ascii(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| if (32..=126).contains(&b) { char::from(b) } else { '?' }).collect()
}

fn utf8(bytes: Bytes) -> Result<String, WireError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| WireError::InvalidUtf8 { tag: 0 })
}

impl StartupMessage {
    /// A protocol 3.0 StartupMessage with these parameters.
    pub fn new(params: Vec<(String, String)>) -> StartupMessage {
        StartupMessage { version_major: 3, version_minor: 0, params }
    }

    /// The value of the last parameter called `name` (PostgreSQL keeps the last one).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The `user` parameter.
    pub fn user(&self) -> Option<&str> {
        self.param("user")
    }

    /// The database to connect to: `database`, or the user name when it is absent or empty.
    pub fn database(&self) -> Option<&str> {
        self.param("database").filter(|d| !d.is_empty()).or_else(|| self.user())
    }

    /// The `options` parameter (command-line switches for the backend).
    pub fn options(&self) -> Option<&str> {
        self.param("options")
    }

    /// What the `replication` parameter asks for.
    ///
    /// # Errors
    /// [`WireError::InvalidReplicationParameter`] for a value PostgreSQL refuses (only
    /// possible for a message built by hand: [`parse_startup`] already checked it).
    pub fn replication(&self) -> Result<ReplicationMode, WireError> {
        self.param("replication").map_or(Ok(ReplicationMode::Off), ReplicationMode::from_param)
    }

    /// Names of the `_pq_.` protocol options, which PostgreSQL 15 recognizes none of.
    pub fn protocol_options(&self) -> Vec<&str> {
        self.params.iter().map(|(n, _)| n.as_str()).filter(|n| n.starts_with("_pq_.")).collect()
    }

    /// Run-time parameters (everything but `user`, `database`, `options`, `replication`
    /// and `_pq_.*`), in order, to be applied like `SET`.
    pub fn guc_options(&self) -> impl Iterator<Item = (&str, &str)> {
        self.params
            .iter()
            .filter(|(n, _)| {
                !matches!(n.as_str(), "user" | "database" | "options" | "replication")
                    && !n.starts_with("_pq_.")
            })
            .map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The run-time parameters a session starts with (`postinit.c:
    /// process_startup_options`): those of `options` — `-c name=value`, `-cname=value` or `--name=value`,
    /// split at unescaped whitespace with `\\` escaping the next character
    /// (`pg_split_opts`); other switches are ignored — then the packet's own (as
    /// [`StartupMessage::guc_options`]), which win.
    pub fn session_settings(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        let words = split_opts(self.options().unwrap_or(""));
        let mut words = words.iter();
        while let Some(w) = words.next() {
            let pair = if w == "-c" {
                words.next().map(String::as_str)
            } else if let Some(rest) = w.strip_prefix("--") {
                Some(rest)
            } else {
                w.strip_prefix("-c")
            };
            if let Some((name, value)) = pair.and_then(|p| p.split_once('=')) {
                out.push((name.replace('-', "_"), value.to_string()));
            }
        }
        // The packet's own parameters come after the switches, so they win.
        out.extend(self.guc_options().map(|(n, v)| (n.to_string(), v.to_string())));
        out
    }

    /// The NegotiateProtocolVersion a PostgreSQL 15 server sends for this message: when the
    /// minor version is above 0 or `_pq_.` options were sent (`postmaster.c: SendNegotiateProtocolVersion`).
    pub fn negotiate_protocol_version(&self) -> Option<BackendMessage> {
        let unrecognized = self.protocol_options();
        if self.version_minor == 0 && unrecognized.is_empty() {
            return None;
        }
        Some(BackendMessage::NegotiateProtocolVersion {
            newest_version: PROTOCOL_3_0,
            unrecognized_options: unrecognized.into_iter().map(str::to_owned).collect(),
        })
    }

    /// Appends this StartupMessage to `buf`.
    pub fn encode(&self, buf: &mut BytesMut) {
        write_message(buf, None, |b| {
            b.put_u16(self.version_major);
            b.put_u16(self.version_minor);
            for (name, value) in &self.params {
                put_cstr(b, name.as_bytes());
                put_cstr(b, value.as_bytes());
            }
            b.put_u8(0);
        });
    }
}

impl StartupPacket {
    /// Appends this packet to `buf` (client side).
    pub fn encode(&self, buf: &mut BytesMut) {
        match self {
            StartupPacket::SslRequest => {
                write_message(buf, None, |b| b.put_u32(NEGOTIATE_SSL_CODE))
            }
            StartupPacket::GssEncRequest => {
                write_message(buf, None, |b| b.put_u32(NEGOTIATE_GSS_CODE));
            }
            StartupPacket::CancelRequest { pid, key } => write_message(buf, None, |b| {
                b.put_u32(CANCEL_REQUEST_CODE);
                b.put_i32(*pid);
                b.put_u32(*key);
            }),
            StartupPacket::Startup(m) => m.encode(buf),
        }
    }
}

/// Appends a protocol-2 ErrorResponse (`E`, then `"FATAL:  message\n"` and a NUL), which
/// is how PostgreSQL answers a StartupMessage asking for a major version below 3.
pub fn encode_v2_error_response(severity: Severity, message: &str, buf: &mut BytesMut) {
    buf.put_u8(b'E');
    let line = format!("{}:  {message}\n", severity.as_str());
    put_cstr(buf, line.as_bytes());
}

#[cfg(test)]
mod tests {

    #[test]
    fn session_settings_come_from_the_packet_and_its_options() {
        let msg = StartupMessage::new(vec![
            ("user".into(), "u".into()),
            ("database".into(), "d".into()),
            ("application_name".into(), "app".into()),
            ("options".into(), r"-c search_path=a\ b --work-mem=4MB -cgeqo=off -x".into()),
            ("replication".into(), "false".into()),
        ]);
        let want: Vec<(String, String)> = [
            ("search_path", "a b"),
            ("work_mem", "4MB"),
            ("geqo", "off"),
            ("application_name", "app"),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
        assert_eq!(msg.session_settings(), want);
        assert_eq!(split_opts("  a\\ b  c "), vec!["a b".to_string(), "c".to_string()]);
    }
    use super::*;

    fn parse(bytes: &[u8]) -> Result<Option<StartupPacket>, WireError> {
        parse_startup(&mut BytesMut::from(bytes))
    }

    fn startup(version: u32, body: &[u8]) -> Vec<u8> {
        let mut v = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(&version.to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn ssl_request_from_capture() {
        // proxy_recvwal.log: SSLRequest raw=0000000804d2162f
        let raw = [0x00, 0x00, 0x00, 0x08, 0x04, 0xd2, 0x16, 0x2f];
        assert_eq!(parse(&raw), Ok(Some(StartupPacket::SslRequest)));
        let mut out = BytesMut::new();
        StartupPacket::SslRequest.encode(&mut out);
        assert_eq!(&out[..], &raw);
    }

    #[test]
    fn pg_receivewal_startup_message() {
        let body = b"user\0postgres\0database\0replication\0replication\0true\0application_name\0pg_receivewal\0\0";
        let Ok(Some(StartupPacket::Startup(m))) = parse(&startup(PROTOCOL_3_0, body)) else {
            panic!("not a startup message")
        };
        assert_eq!(m.user(), Some("postgres"));
        assert_eq!(m.database(), Some("replication"));
        assert_eq!(m.replication(), Ok(ReplicationMode::Physical));
        assert_eq!(
            m.guc_options().collect::<Vec<_>>(),
            vec![("application_name", "pg_receivewal")]
        );
        assert_eq!(m.negotiate_protocol_version(), None);
    }

    #[test]
    fn errors_in_postgresql_order() {
        assert_eq!(parse(b"\0\0\0\x07abc"), Err(WireError::InvalidStartupLength { len: 7 }));
        assert_eq!(parse(b"\0\0\x27\x15"), Err(WireError::InvalidStartupLength { len: 10005 }));
        assert_eq!(parse(b"\0\0\x27\x14"), Ok(None));
        let two = startup(0x0002_0000, b"user\0u\0\0");
        assert_eq!(parse(&two), Err(WireError::UnsupportedProtocol { major: 2, minor: 0 }));
        assert_eq!(parse(&startup(PROTOCOL_3_0, b"user\0post")), Err(WireError::StartupLayout));
        assert_eq!(parse(&startup(PROTOCOL_3_0, b"user\0u\0\0x")), Err(WireError::StartupLayout));
        assert_eq!(parse(&startup(PROTOCOL_3_0, b"")), Err(WireError::StartupLayout));
        assert_eq!(parse(&startup(PROTOCOL_3_0, b"database\0d\0\0")), Err(WireError::NoUserName));
        assert_eq!(parse(&startup(PROTOCOL_3_0, b"user\0\0\0")), Err(WireError::NoUserName));
        let bad = startup(PROTOCOL_3_0, b"user\0u\0replication\0maybe\0\0");
        assert_eq!(parse(&bad), Err(WireError::InvalidReplicationParameter("maybe".into())));
        let cancel = startup(CANCEL_REQUEST_CODE, b"\0\0\0\x01");
        assert_eq!(
            parse(&cancel),
            Err(WireError::InvalidRequestLength { request: "cancel request", len: 12 })
        );
    }

    #[test]
    fn longer_ssl_and_gss_requests_are_taken_whole() {
        let mut buf = BytesMut::from(&startup(NEGOTIATE_SSL_CODE, b"abcd")[..]);
        buf.extend_from_slice(b"next");
        assert_eq!(parse_startup(&mut buf), Ok(Some(StartupPacket::SslRequest)));
        assert_eq!(&buf[..], b"next");
        let gss = startup(NEGOTIATE_GSS_CODE, &[0; 8]);
        assert_eq!(parse(&gss), Ok(Some(StartupPacket::GssEncRequest)));
    }

    #[test]
    fn application_name_takes_any_bytes_as_postgresql_cleans_them() {
        let body = b"user\0u\0application_name\0ab\xff\xfec\xc3\xa9\0\0";
        let Ok(Some(StartupPacket::Startup(m))) = parse(&startup(PROTOCOL_3_0, body)) else {
            panic!("not a startup message")
        };
        // Seen live on 15.18: ParameterStatus application_name "ab??c??".
        assert_eq!(m.param("application_name"), Some("ab??c??"));
        let bad_user = startup(PROTOCOL_3_0, b"user\0\xff\0\0");
        assert_eq!(parse(&bad_user), Err(WireError::InvalidUtf8 { tag: 0 }));
    }

    #[test]
    fn minor_version_and_pq_options_are_negotiated() {
        let body = b"user\0u\0_pq_.foo\0x\0\0";
        let Ok(Some(StartupPacket::Startup(m))) = parse(&startup(0x0003_0001, body)) else {
            panic!("not a startup message")
        };
        // Seen live on 15.18: v 00000015 00030000 00000001 "_pq_.foo\0"
        let mut out = BytesMut::new();
        m.negotiate_protocol_version().unwrap().encode(&mut out);
        assert_eq!(&out[..], b"v\0\0\0\x15\0\x03\0\0\0\0\0\x01_pq_.foo\0");
    }

    #[test]
    fn booleans_as_postgresql_reads_them() {
        for yes in ["true", "T", "tr", "yes", "Y", "on", "ON", "1"] {
            assert_eq!(parse_bool(yes), Some(true), "{yes}");
        }
        for no in ["false", "f", "no", "N", "off", "of", "0"] {
            assert_eq!(parse_bool(no), Some(false), "{no}");
        }
        for bad in ["", "o", "truex", "10", "maybe", "onn"] {
            assert_eq!(parse_bool(bad), None, "{bad}");
        }
        assert_eq!(ReplicationMode::from_param("database"), Ok(ReplicationMode::Logical));
        assert!(ReplicationMode::from_param("Database").is_err());
    }

    #[test]
    fn v2_error_matches_live_bytes() {
        let mut out = BytesMut::new();
        let msg = "unsupported frontend protocol 2.0: server supports 3.0 to 3.0";
        encode_v2_error_response(Severity::Fatal, msg, &mut out);
        assert_eq!(
            &out[..],
            &b"EFATAL:  unsupported frontend protocol 2.0: server supports 3.0 to 3.0\n\0"[..]
        );
    }
}
