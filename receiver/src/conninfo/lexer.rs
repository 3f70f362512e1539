//! The two spellings of a libpq connection string, turned into `(keyword, value)` pairs:
//! `key=value` lists (`fe-connect.c: conninfo_parse`) and `postgresql://` URIs
//! (`fe-connect.c: conninfo_uri_parse_options`, `conninfo_uri_parse_params`).

use super::ConnInfoError;

/// The URI designators libpq accepts (`uri_designator`, `short_uri_designator`).
const URI_PREFIXES: [&str; 2] = ["postgresql://", "postgres://"];

/// Splits a connection string into pairs, in order; a later pair overrides an earlier one.
///
/// # Errors
/// libpq's syntax errors ([`ConnInfoError::Syntax`]) and a NUL byte ([`ConnInfoError::Nul`]).
pub(super) fn split(s: &str) -> Result<Vec<(String, String)>, ConnInfoError> {
    if s.contains('\0') {
        return Err(ConnInfoError::Nul);
    }
    match URI_PREFIXES.iter().find_map(|p| s.strip_prefix(p)) {
        Some(rest) => split_uri(rest, s),
        None => split_key_values(s),
    }
}

/// C's `isspace` in the C locale (Rust's `is_ascii_whitespace` leaves out `\v`).
fn is_c_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

// fe-connect.c: conninfo_parse
fn split_key_values(s: &str) -> Result<Vec<(String, String)>, ConnInfoError> {
    let mut pairs = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| is_c_space(*c)).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !is_c_space(*c)) {
            key.push(c);
        }
        while chars.next_if(|c| is_c_space(*c)).is_some() {}
        if chars.next() != Some('=') {
            return Err(ConnInfoError::Syntax(format!(
                "missing \"=\" after \"{key}\" in connection info string"
            )));
        }
        while chars.next_if(|c| is_c_space(*c)).is_some() {}
        let value = if chars.next_if_eq(&'\'').is_some() {
            quoted_value(&mut chars)?
        } else {
            bare_value(&mut chars)
        };
        pairs.push((key, value));
    }
}

fn bare_value(chars: &mut impl Iterator<Item = char>) -> String {
    let mut value = String::new();
    while let Some(c) = chars.next() {
        match c {
            c if is_c_space(c) => break,
            '\\' => value.extend(chars.next()),
            c => value.push(c),
        }
    }
    value
}

fn quoted_value(chars: &mut impl Iterator<Item = char>) -> Result<String, ConnInfoError> {
    let mut value = String::new();
    loop {
        match chars.next() {
            None => {
                return Err(ConnInfoError::Syntax(
                    "unterminated quoted string in connection info string".into(),
                ))
            }
            Some('\\') => value.extend(chars.next()),
            Some('\'') => return Ok(value),
            Some(c) => value.push(c),
        }
    }
}

// fe-connect.c: conninfo_uri_parse_options
fn split_uri(rest: &str, uri: &str) -> Result<Vec<(String, String)>, ConnInfoError> {
    let mut pairs = Vec::new();
    let mut push = |key: &str, raw: &str| -> Result<(), ConnInfoError> {
        if !raw.is_empty() {
            pairs.push((key.to_string(), uri_decode(raw)?));
        }
        Ok(())
    };
    let mut rest = rest;
    let userinfo_end = rest.find(['@', '/']);
    if let Some(at) = userinfo_end.filter(|&i| rest.as_bytes().get(i) == Some(&b'@')) {
        let (userinfo, after) = (&rest[..at], &rest[at + 1..]);
        match userinfo.split_once(':') {
            Some((user, password)) => {
                push("user", user)?;
                push("password", password)?;
            }
            None => push("user", userinfo)?,
        }
        rest = after;
    }
    let (host, port, after) = uri_host_port(rest, uri)?;
    push("host", host)?;
    push("port", port)?;
    let (path, query) = match after.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (after, None),
    };
    if let Some(dbname) = path.strip_prefix('/') {
        push("dbname", dbname)?;
    }
    if let Some(query) = query {
        uri_params(query, &mut pairs)?;
    }
    Ok(pairs)
}

/// Reads `host[:port]` (IPv6 hosts in brackets) and returns `(host, port, rest)`, where
/// `rest` starts at `/`, `?` or is empty.
fn uri_host_port<'a>(s: &'a str, uri: &str) -> Result<(&'a str, &'a str, &'a str), ConnInfoError> {
    let (host, after_host) = if let Some(inner) = s.strip_prefix('[') {
        let Some(close) = inner.find(']') else {
            return Err(ConnInfoError::Syntax(format!(
                "end of string reached when looking for matching \"]\" in IPv6 host address \
                 in URI: \"{uri}\""
            )));
        };
        if close == 0 {
            return Err(ConnInfoError::Syntax(format!(
                "IPv6 host address may not be empty in URI: \"{uri}\""
            )));
        }
        let after = &inner[close + 1..];
        if let Some(c) = after.chars().next().filter(|c| !matches!(c, ':' | '/' | '?' | ',')) {
            let pos = uri.len() - after.len() + 1;
            return Err(ConnInfoError::Syntax(format!(
                "unexpected character \"{c}\" at position {pos} in URI (expected \":\" or \"/\"): \"{uri}\""
            )));
        }
        (&inner[..close], after)
    } else {
        let end = s.find([':', '/', '?', ',']).unwrap_or(s.len());
        (&s[..end], &s[end..])
    };
    let (port, rest) = match after_host.strip_prefix(':') {
        Some(p) => {
            let end = p.find(['/', '?', ',']).unwrap_or(p.len());
            (&p[..end], &p[end..])
        }
        None => (&after_host[..0], after_host),
    };
    if rest.starts_with(',') {
        return Err(ConnInfoError::MultipleHosts);
    }
    Ok((host, port, rest))
}

// fe-connect.c: conninfo_uri_parse_params
fn uri_params(query: &str, pairs: &mut Vec<(String, String)>) -> Result<(), ConnInfoError> {
    for param in query.split('&').filter(|p| !p.is_empty()) {
        let Some((key, value)) = param.split_once('=') else {
            return Err(ConnInfoError::Syntax(format!(
                "missing key/value separator \"=\" in URI query parameter: \"{param}\""
            )));
        };
        if value.contains('=') {
            return Err(ConnInfoError::Syntax(format!(
                "extra key/value separator \"=\" in URI query parameter: \"{key}\""
            )));
        }
        let (key, value) = (uri_decode(key)?, uri_decode(value)?);
        if key == "ssl" && value == "true" {
            pairs.push(("sslmode".into(), "require".into()));
        } else if super::is_known_keyword(&key) {
            pairs.push((key, value));
        } else {
            return Err(ConnInfoError::Syntax(format!("invalid URI query parameter: \"{key}\"")));
        }
    }
    Ok(())
}

// fe-connect.c: conninfo_uri_decode
fn uri_decode(s: &str) -> Result<String, ConnInfoError> {
    let bad = || ConnInfoError::Syntax(format!("invalid percent-encoded token: \"{s}\""));
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b != b'%' {
            out.push(b);
            continue;
        }
        let hi = bytes.next().and_then(hex_digit).ok_or_else(bad)?;
        let lo = bytes.next().and_then(hex_digit).ok_or_else(bad)?;
        let byte = hi << 4 | lo;
        if byte == 0 {
            return Err(ConnInfoError::Syntax(format!(
                "forbidden value %00 in percent-encoded value: \"{s}\""
            )));
        }
        out.push(byte);
    }
    String::from_utf8(out).map_err(|_| bad())
}

fn hex_digit(b: u8) -> Option<u8> {
    char::from(b).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn key_values_with_quotes_and_escapes() {
        let got =
            split(r"host = h1  port=5433 application_name='a b\' c' user=x\ y dbname=").unwrap();
        assert_eq!(
            got,
            pairs(&[
                ("host", "h1"),
                ("port", "5433"),
                ("application_name", "a b' c"),
                ("user", "x y"),
                ("dbname", "")
            ])
        );
        assert_eq!(split("a='x'b=c").unwrap(), pairs(&[("a", "x"), ("b", "c")]));
    }

    #[test]
    fn key_value_errors_have_libpq_text() {
        assert_eq!(
            split("host").unwrap_err().to_string(),
            "missing \"=\" after \"host\" in connection info string"
        );
        assert_eq!(
            split("host x=1").unwrap_err().to_string(),
            "missing \"=\" after \"host\" in connection info string"
        );
        assert_eq!(
            split("host='abc").unwrap_err().to_string(),
            "unterminated quoted string in connection info string"
        );
    }

    #[test]
    fn uris() {
        let got =
            split("postgresql://us%40r:p%3Aw@db.example:6543/my%20db?sslmode=disable&ssl=true")
                .unwrap();
        assert_eq!(
            got,
            pairs(&[
                ("user", "us@r"),
                ("password", "p:w"),
                ("host", "db.example"),
                ("port", "6543"),
                ("dbname", "my db"),
                ("sslmode", "disable"),
                ("sslmode", "require")
            ])
        );
        assert_eq!(split("postgres://").unwrap(), pairs(&[]));
        assert_eq!(
            split("postgresql://[::1]:5432").unwrap(),
            pairs(&[("host", "::1"), ("port", "5432")])
        );
        assert_eq!(split("postgresql://h?").unwrap(), pairs(&[("host", "h")]));
        assert_eq!(split("postgresql:///db").unwrap(), pairs(&[("dbname", "db")]));
    }

    #[test]
    fn uri_errors_have_libpq_text() {
        let e = |s| split(s).unwrap_err().to_string();
        assert_eq!(e("postgresql://h/d?x=1"), "invalid URI query parameter: \"x\"");
        assert_eq!(
            e("postgresql://h/d?port"),
            "missing key/value separator \"=\" in URI query parameter: \"port\""
        );
        assert_eq!(
            e("postgresql://h/d?port=1=2"),
            "extra key/value separator \"=\" in URI query parameter: \"port\""
        );
        assert_eq!(e("postgresql://h/%zz"), "invalid percent-encoded token: \"%zz\"");
        assert_eq!(
            e("postgresql://h/a%00"),
            "forbidden value %00 in percent-encoded value: \"a%00\""
        );
        assert_eq!(e("postgresql://[::1"), "end of string reached when looking for matching \"]\" in IPv6 host address in URI: \"postgresql://[::1\"");
        assert_eq!(
            e("postgresql://[]"),
            "IPv6 host address may not be empty in URI: \"postgresql://[]\""
        );
        assert_eq!(e("postgresql://h1,h2/db"), "multiple hosts are not supported");
    }
}
