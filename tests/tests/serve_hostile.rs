//! Hostile input on raw sockets, side by side with a live PostgreSQL 15 (issue 11 §2):
//! the same bytes go to PostgreSQL and to `walstream serve` over a copy of its pg_wal, and
//! the messages that come back (FATAL/ERROR codes and texts, AuthenticationOk before a
//! FATAL, one-byte answers, the connection closing) must be the same.
//!
//! - startup packets with unknown, misnamed, unsettable or privileged settings, roles
//!   that may not log in or replicate, and an application_name that is not UTF-8;
//! - malformed standby messages in a walsender stream: a short `r`/`h` and an empty
//!   CopyData are an ERROR after which the connection is usable; an unknown CopyData type
//!   closes it without a word;
//! - SSLRequest and GSSENCRequest packets longer than 8 bytes, and GSSENCRequest as
//!   PostgreSQL 15 built without GSSAPI answers it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context, Result};
use walstream_tests::{scenario, Lsn, PgCluster, ServeProcess};

const WALSTREAM: &str = env!("CARGO_BIN_EXE_walstream");

const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;

/// A primary with the roles the tests use, and `walstream serve` over a copy of its WAL
/// with the same roles.
struct Pair {
    pg: PgCluster,
    serve: ServeProcess,
    _waldir: tempfile::TempDir,
    _conf: tempfile::TempDir,
    /// The start of a complete segment both have.
    segment_start: Lsn,
}

fn pair() -> Result<Pair> {
    let pg = PgCluster::start(&scenario::source_config())?;
    pg.psql("CREATE ROLE norep LOGIN; CREATE ROLE nologin_r NOLOGIN")?;
    let end = pg.switch_wal()?;
    let waldir = scenario::copy_pg_wal(&pg)?;
    let conf = tempfile::tempdir()?;
    let roles = conf.path().join("roles");
    std::fs::write(&roles, "postgres: SUPERUSER REPLICATION\nnorep:\nnologin_r: NOLOGIN\n")?;
    let serve = ServeProcess::start(
        WALSTREAM.as_ref(),
        waldir.path(),
        &["--passwords", roles.to_str().context("path")?],
    )?;
    let segment_start = Lsn(end.0 - u64::from(scenario::seg_size().bytes()));
    Ok(Pair { pg, serve, _waldir: waldir, _conf: conf, segment_start })
}

/// A startup packet's parameters.
type Params<'a> = Vec<(&'a str, &'a [u8])>;

/// A StartupMessage (protocol 3.0) with these parameters.
fn startup(params: &[(&str, &[u8])]) -> Vec<u8> {
    let mut body = 196_608u32.to_be_bytes().to_vec();
    for (name, value) in params {
        body.extend_from_slice(name.as_bytes());
        body.push(0);
        body.extend_from_slice(value);
        body.push(0);
    }
    body.push(0);
    packet(&body)
}

/// A length word and `body`.
fn packet(body: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(body.len() + 4).unwrap().to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

/// A request packet: `code` and `extra` bytes after it.
fn request(code: u32, extra: &[u8]) -> Vec<u8> {
    let mut body = code.to_be_bytes().to_vec();
    body.extend_from_slice(extra);
    packet(&body)
}

/// A frontend message.
fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&packet(body));
    out
}

/// A connection that reports what comes back as lines.
struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
    eof: bool,
}

impl Raw {
    fn connect(port: u16) -> Result<Raw> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        Ok(Raw { stream, buf: Vec::new(), eof: false })
    }

    fn send(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream.write_all(bytes)?;
        Ok(())
    }

    /// Reads until the peer closes or is silent for `quiet`.
    fn fill(&mut self, quiet: Duration) -> Result<()> {
        self.stream.set_read_timeout(Some(quiet))?;
        let mut chunk = [0u8; 65536];
        while !self.eof {
            match self.stream.read(&mut chunk) {
                Ok(0) => self.eof = true,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(())
                }
                // PostgreSQL resets a connection it closes with input unread.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => self.eof = true,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// One byte (an answer to SSLRequest or GSSENCRequest).
    fn byte(&mut self) -> Result<String> {
        self.fill(Duration::from_millis(500))?;
        if self.buf.is_empty() {
            return Ok(if self.eof { "<EOF>" } else { "<nothing>" }.to_string());
        }
        Ok(char::from(self.buf.remove(0)).to_string())
    }

    /// The messages that came, as lines (CopyData left out), then `<EOF>` if it closed.
    fn messages(&mut self, quiet: Duration) -> Result<Vec<String>> {
        self.fill(quiet)?;
        let mut lines = Vec::new();
        while self.buf.len() >= 5 {
            let len = u32::from_be_bytes(self.buf[1..5].try_into()?) as usize;
            if self.buf.len() < 1 + len {
                break;
            }
            let msg: Vec<u8> = self.buf.drain(..1 + len).collect();
            if let Some(line) = describe(msg[0], &msg[5..]) {
                lines.push(line);
            }
        }
        if self.eof {
            lines.push("<EOF>".to_string());
        }
        Ok(lines)
    }
}

/// A message as a line: errors by severity, code, message and detail; ParameterStatus
/// only for application_name; AuthenticationOk; ReadyForQuery. Others by their type.
fn describe(tag: u8, body: &[u8]) -> Option<String> {
    let cstrs = || body.split(|&b| b == 0).map(|s| String::from_utf8_lossy(s).into_owned());
    match tag {
        b'd' | b'K' => None,
        b'E' | b'N' => {
            let fields: Vec<String> = cstrs()
                .filter(|f| f.starts_with(['V', 'C', 'M', 'D']))
                .map(|f| f[1..].to_string())
                .collect();
            Some(format!("{} {}", char::from(tag), fields.join(" | ")))
        }
        b'S' => {
            let parts: Vec<String> = cstrs().collect();
            (parts.first().map(String::as_str) == Some("application_name"))
                .then(|| format!("S application_name={}", parts[1]))
        }
        b'R' => Some(format!("R {}", u32::from_be_bytes(body.get(..4)?.try_into().ok()?))),
        b'Z' => Some(format!("Z {}", char::from(*body.first()?))),
        other => Some(char::from(other).to_string()),
    }
}

/// What `packets` bring back from a fresh connection to `port`.
fn exchange(port: u16, packets: &[u8]) -> Result<Vec<String>> {
    let mut raw = Raw::connect(port)?;
    raw.send(packets)?;
    raw.messages(Duration::from_millis(700))
}

#[test]
fn startup_packets_are_refused_and_accepted_as_postgresql_does() -> Result<()> {
    let p = pair()?;
    let db: &[u8] = b"postgres";
    let cases: Vec<(&str, Params)> = vec![
        ("unknown", vec![("user", b"postgres"), ("database", db), ("foo", b"bar")]),
        (
            "unknown, walsender",
            vec![("user", b"postgres"), ("replication", b"true"), ("foo", b"bar")],
        ),
        ("unknown in capitals", vec![("user", b"postgres"), ("database", db), ("FOO", b"1")]),
        (
            "unknown in options",
            vec![("user", b"postgres"), ("database", db), ("options", b"-c nosuch=1")],
        ),
        ("postmaster", vec![("user", b"postgres"), ("database", db), ("WAL_LEVEL", b"minimal")]),
        (
            "sighup",
            vec![("user", b"postgres"), ("database", db), ("wal_receiver_status_interval", b"1")],
        ),
        ("internal", vec![("user", b"postgres"), ("database", db), ("server_version", b"1")]),
        ("bad custom name", vec![("user", b"postgres"), ("database", db), ("foo.", b"1")]),
        ("custom name", vec![("user", b"postgres"), ("database", db), ("Foo.Bar", b"1")]),
        ("user setting", vec![("user", b"postgres"), ("database", db), ("DateStyle", b"ISO")]),
        ("bad value", vec![("user", b"postgres"), ("database", db), ("wal_sender_timeout", b"zz")]),
        (
            "superuser setting",
            vec![("user", b"norep"), ("database", db), ("log_min_duration_statement", b"1")],
        ),
        ("no replication", vec![("user", b"norep"), ("replication", b"true")]),
        ("no such role", vec![("user", b"nosuchrole"), ("database", db)]),
        ("no login", vec![("user", b"nologin_r"), ("replication", b"true")]),
        (
            "application_name",
            vec![
                ("user", b"postgres"),
                ("database", db),
                ("application_name", b"ab\xff\xfec\xc3\xa9"),
            ],
        ),
        (
            "application_name, walsender",
            vec![
                ("user", b"postgres"),
                ("replication", b"true"),
                ("application_name", b"\x01x\x7f"),
            ],
        ),
    ];
    for (what, params) in cases {
        let packet = startup(&params);
        let want = exchange(p.pg.port(), &packet)?;
        let got = exchange(p.serve.port(), &packet)?;
        assert_eq!(got, want, "{what}\n{}", p.serve.log());
        assert_eq!(want.first().map(String::as_str), Some("R 0"), "{what}");
    }
    Ok(())
}

#[test]
fn malformed_standby_messages_end_streaming_as_postgresql_does() -> Result<()> {
    let p = pair()?;
    let start = format!("START_REPLICATION {} TIMELINE 1\0", p.segment_start);
    let cases: [(&str, Vec<u8>); 4] = [
        ("short r", message(b'd', b"r\0\0\0\0\0")),
        ("short h", message(b'd', b"h\0\0\0")),
        ("empty CopyData", message(b'd', b"")),
        ("unknown type", message(b'd', b"z123")),
    ];
    for (what, bad) in cases {
        let mut seen = Vec::new();
        for port in [p.pg.port(), p.serve.port()] {
            let mut raw = Raw::connect(port)?;
            raw.send(&startup(&[("user", b"postgres"), ("replication", b"true")]))?;
            raw.messages(Duration::from_millis(300))?;
            raw.send(&message(b'Q', start.as_bytes()))?;
            let started = raw.messages(Duration::from_millis(300))?;
            assert_eq!(started, ["W"], "{what} on port {port}");
            raw.send(&bad)?;
            let after = raw.messages(Duration::from_millis(700))?;
            let identify = if raw.eof {
                Vec::new()
            } else {
                raw.send(&message(b'Q', b"IDENTIFY_SYSTEM\0"))?;
                raw.messages(Duration::from_millis(500))?
            };
            seen.push((after, identify));
        }
        assert_eq!(seen[1], seen[0], "{what}: walstream (right: PostgreSQL)\n{}", p.serve.log());
    }
    // What PostgreSQL 15 answered (seen live), spelled out.
    let log = p.serve.log();
    assert!(log.contains("unexpected message type \"z\""), "{log}");
    Ok(())
}

#[test]
fn ssl_and_gss_requests_are_answered_as_postgresql_15() -> Result<()> {
    let p = pair()?;
    let login = startup(&[("user", b"postgres"), ("database", b"postgres")]);
    // An SSLRequest longer than 8 bytes: its code counts, the rest is ignored.
    for extra in [&b"abcd"[..], &[0u8; 8][..]] {
        let mut answers = Vec::new();
        for port in [p.pg.port(), p.serve.port()] {
            let mut raw = Raw::connect(port)?;
            raw.send(&request(SSL_REQUEST, extra))?;
            let answer = raw.byte()?;
            raw.send(&login)?;
            let rest = raw.messages(Duration::from_millis(500))?;
            answers.push((answer, rest.first().cloned(), rest.last().cloned()));
        }
        assert_eq!(answers[1], answers[0], "SSLRequest with {} more bytes", extra.len());
        assert_eq!(answers[0].0, "N");
    }
    // GSSENCRequest: this PostgreSQL is built with GSSAPI and answers `G`; one built
    // without (postmaster.c: ProcessStartupPacket, no ENABLE_GSS) answers `N` and reads
    // the next packet, which may be an SSLRequest; a second GSSENCRequest is then an
    // unsupported protocol version. walstream has no GSSAPI and answers as that build.
    let mut raw = Raw::connect(p.serve.port())?;
    raw.send(&request(GSSENC_REQUEST, b"abcd"))?;
    assert_eq!(raw.byte()?, "N");
    raw.send(&request(SSL_REQUEST, b""))?;
    assert_eq!(raw.byte()?, "N");
    raw.send(&login)?;
    let rest = raw.messages(Duration::from_millis(500))?;
    assert_eq!((rest.first(), rest.last()), (Some(&"R 0".to_string()), Some(&"Z I".to_string())));
    let mut raw = Raw::connect(p.serve.port())?;
    raw.send(&request(GSSENC_REQUEST, b""))?;
    assert_eq!(raw.byte()?, "N");
    raw.send(&request(GSSENC_REQUEST, b""))?;
    assert_eq!(
        raw.messages(Duration::from_millis(500))?,
        [
            "E FATAL | 0A000 | unsupported frontend protocol 1234.5680: server supports 3.0 to 3.0",
            "<EOF>"
        ]
    );
    Ok(())
}

#[test]
fn long_identifiers_get_the_truncation_notice_of_postgresql() -> Result<()> {
    let p = pair()?;
    let long = "a".repeat(70);
    let quoted = format!("\"{}é\"", "B".repeat(64));
    let queries = [
        format!("CREATE_REPLICATION_SLOT {long} PHYSICAL"),
        format!("READ_REPLICATION_SLOT {long}"),
        format!("DROP_REPLICATION_SLOT {quoted}"),
        format!("DROP_REPLICATION_SLOT {long}"),
        format!("SHOW {}", "y".repeat(64)),
        format!("START_REPLICATION SLOT {long} PHYSICAL 0/0 TIMELINE 0"),
    ];
    let mut seen = Vec::new();
    for port in [p.pg.port(), p.serve.port()] {
        let mut raw = Raw::connect(port)?;
        raw.send(&startup(&[("user", b"postgres"), ("replication", b"true")]))?;
        raw.messages(Duration::from_millis(300))?;
        let mut lines = Vec::new();
        for q in &queries {
            raw.send(&message(b'Q', format!("{q}\0").as_bytes()))?;
            lines.push(raw.messages(Duration::from_millis(400))?);
        }
        seen.push(lines);
    }
    assert_eq!(seen[1], seen[0], "walstream (left), PostgreSQL (right)");
    let notice = format!(
        "N NOTICE | 42622 | identifier \"{long}\" will be truncated to \"{}\"",
        "a".repeat(63)
    );
    assert_eq!(seen[1][0].first(), Some(&notice));
    Ok(())
}
