//! The password file (`~/.pgpass`): `hostname:port:database:username:password` lines
//! with `*` wildcards and `\` escapes (`fe-connect.c: passwordFromFile`).

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The password for `host`, `port`, `db`, `user` from the password file at `path`.
///
/// `None` when the file does not exist, is not a plain file, is readable or writable by
/// group or others (libpq warns and ignores it; the warning goes to `tracing`), or has no
/// matching line. The first matching line wins; `#` lines are comments.
pub fn pgpass_lookup(path: &Path, host: &str, port: u16, db: &str, user: &str) -> Option<String> {
    if db.is_empty() || user.is_empty() {
        return None;
    }
    let host = if host.is_empty() { "localhost" } else { host };
    let meta = fs::metadata(path).ok()?;
    if !meta.is_file() {
        tracing::warn!("password file \"{}\" is not a plain file", path.display());
        return None;
    }
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            "password file \"{}\" has group or world access; permissions should be u=rw (0600) or less",
            path.display()
        );
        return None;
    }
    let file = fs::File::open(path).ok()?;
    let port = port.to_string();
    let keys = [host, port.as_str(), db, user];
    BufReader::new(file)
        .split(b'\n')
        .map_while(Result::ok)
        .find_map(|line| match_line(&line, &keys))
}

/// The password of `line` if its four fields match `keys`.
fn match_line(line: &[u8], keys: &[&str; 4]) -> Option<String> {
    if line.first() == Some(&b'#') {
        return None;
    }
    let mut rest = strip_crlf(line);
    if rest.is_empty() {
        return None;
    }
    for key in keys {
        rest = match_field(rest, key.as_bytes())?;
    }
    String::from_utf8(unescape_password(rest)).ok()
}

fn strip_crlf(mut line: &[u8]) -> &[u8] {
    while let Some((b'\n' | b'\r', head)) = line.split_last() {
        line = head;
    }
    line
}

/// Matches one `:`-terminated field against `token`; returns what follows the `:`
/// (`fe-connect.c: pwdfMatchesString`).
fn match_field<'a>(field: &'a [u8], token: &[u8]) -> Option<&'a [u8]> {
    if let Some(rest) = field.strip_prefix(b"*:") {
        return Some(rest);
    }
    let mut tok = token.iter();
    let mut i = 0;
    while let Some(&c) = field.get(i) {
        let escaped = c == b'\\';
        let c = if escaped {
            i += 1;
            match field.get(i) {
                Some(&c) => c,
                None => return None,
            }
        } else {
            c
        };
        i += 1;
        if c == b':' && !escaped && tok.as_slice().is_empty() {
            return field.get(i..);
        }
        if tok.next() != Some(&c) {
            return None;
        }
    }
    None
}

/// The password field up to an unescaped `:`, with backslash escapes removed.
fn unescape_password(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut bytes = field.iter().copied().peekable();
    while let Some(b) = bytes.next() {
        match b {
            b':' => break,
            b'\\' => out.push(bytes.next().unwrap_or(b'\\')),
            b => out.push(b),
        }
    }
    out
}

/// Fuzz entry point: matches arbitrary bytes as one password-file line.
pub fn fuzz_pgpass_line(data: &[u8]) {
    let _ = match_line(data, &["localhost", "5432", "replication", "postgres"]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str, mode: u32) -> tempfile::NamedTempFile {
        use std::io::Write;
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        fs::set_permissions(f.path(), fs::Permissions::from_mode(mode)).unwrap();
        f
    }

    #[test]
    fn first_matching_line_wins() {
        let f = write(
            "# comment\n\nother:5432:*:*:no\n\
             db\\:host:*:*:u:colon\r\n\
             *:5433:replication:rep:p\\:w\\\\x:ignored\n\
             *:*:*:*:fallback\n",
            0o600,
        );
        let look = |h, p, d, u| pgpass_lookup(f.path(), h, p, d, u);
        assert_eq!(look("localhost", 5433, "replication", "rep").as_deref(), Some("p:w\\x"));
        assert_eq!(look("db:host", 1, "x", "u").as_deref(), Some("colon"));
        assert_eq!(look("localhost", 5432, "replication", "rep").as_deref(), Some("fallback"));
        assert_eq!(look("", 5432, "", "rep"), None);
    }

    #[test]
    fn group_or_world_access_means_ignored() {
        let f = write("*:*:*:*:secret\n", 0o640);
        assert_eq!(pgpass_lookup(f.path(), "h", 1, "d", "u"), None);
        fs::set_permissions(f.path(), fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(pgpass_lookup(f.path(), "h", 1, "d", "u").as_deref(), Some("secret"));
    }

    #[test]
    fn missing_file_or_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(pgpass_lookup(dir.path(), "h", 1, "d", "u"), None);
        assert_eq!(pgpass_lookup(&dir.path().join("nope"), "h", 1, "d", "u"), None);
    }

    proptest::proptest! {
        #[test]
        fn lines_never_panic(line in proptest::collection::vec(0u8.., 0..64)) {
            fuzz_pgpass_line(&line);
        }

        #[test]
        fn escaped_fields_match_themselves(
            fields in proptest::array::uniform4("[a-z:\\\\*]{0,6}"),
            pw in "[a-z:\\\\]{0,6}",
        ) {
            let esc = |s: &str| s.replace('\\', "\\\\").replace(':', "\\:");
            let line: Vec<String> = fields.iter().chain([&pw]).map(|f| esc(f)).collect();
            let keys = [&*fields[0], &*fields[1], &*fields[2], &*fields[3]];
            let got = match_line(line.join(":").as_bytes(), &keys);
            proptest::prop_assert_eq!(got, Some(pw.clone()));
        }
    }

    #[test]
    fn field_matching() {
        assert_eq!(match_field(b"abc:rest", b"abc"), Some(&b"rest"[..]));
        assert_eq!(match_field(b"abc:rest", b"ab"), None);
        assert_eq!(match_field(b"ab:rest", b"abc"), None);
        assert_eq!(match_field(b"a\\:b:rest", b"a:b"), Some(&b"rest"[..]));
        assert_eq!(match_field(b"*:rest", b"anything"), Some(&b"rest"[..]));
        assert_eq!(match_field(b"abc", b"abc"), None);
        assert_eq!(match_field(b"ab\\", b"ab"), None);
    }
}
