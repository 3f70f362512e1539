//! The roles file: role names, verifiers and attributes (the part of `pg_authid` a
//! walsender needs), and the login checks `utils/init/miscinit.c` and `postinit.c` make.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use walstream_protocol::wire::sqlstate;

use super::verifier::Verifier;
use super::AuthError;

/// One role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    /// The role name, exactly as clients send it.
    pub name: String,
    /// The stored verifier; `None` means no password (password methods always fail).
    pub verifier: Option<Verifier>,
    /// `SUPERUSER`.
    pub superuser: bool,
    /// `REPLICATION`.
    pub replication: bool,
    /// `LOGIN` (the default) or `NOLOGIN`.
    pub login: bool,
}

impl Role {
    /// A role with no password and no attributes but LOGIN.
    pub fn new(name: impl Into<String>) -> Role {
        Role {
            name: name.into(),
            verifier: None,
            superuser: false,
            replication: false,
            login: true,
        }
    }
}

impl fmt::Display for Role {
    /// One line of the roles file.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if needs_quotes(&self.name) {
            write!(f, "\"{}\":", self.name.replace('"', "\"\""))?;
        } else {
            write!(f, "{}:", self.name)?;
        }
        if let Some(v) = &self.verifier {
            write!(f, "{v}")?;
        }
        for (on, name) in [(self.superuser, "SUPERUSER"), (self.replication, "REPLICATION")] {
            if on {
                write!(f, " {name}")?;
            }
        }
        if !self.login {
            f.write_str(" NOLOGIN")?;
        }
        Ok(())
    }
}

fn needs_quotes(name: &str) -> bool {
    name.is_empty()
        || name.starts_with('"')
        || name.starts_with('#')
        || name.contains(':')
        || name.contains(['\n', '\r'])
        || name.starts_with(char::is_whitespace)
}

/// Why a roles file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RolesError {
    /// The file could not be read.
    #[error("could not read roles file \"{}\": {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A malformed line.
    #[error("line {line_number} of the roles file: {message}")]
    Line {
        /// The line number, from 1.
        line_number: usize,
        /// What is wrong.
        message: String,
    },
}

/// The known roles: from a file, or every name when there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roles {
    /// `None`: permissive, every name is a superuser with REPLICATION and no password.
    roles: Option<BTreeMap<String, Role>>,
}

impl Roles {
    /// Parses a roles file; the format is in the [`crate::auth`] module documentation.
    ///
    /// # Errors
    /// [`RolesError::Line`] for the first bad line: no `:`, an unterminated quoted name,
    /// an empty name, a verifier that is neither SCRAM-SHA-256 nor md5, an unknown
    /// attribute, or a role named twice.
    pub fn parse(text: &str) -> Result<Roles, RolesError> {
        let mut roles = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let line_number = i + 1;
            let err = |message: String| RolesError::Line { line_number, message };
            let Some(role) = parse_line(line).map_err(err)? else {
                continue;
            };
            if roles.contains_key(&role.name) {
                return Err(err(format!("role \"{}\" appears twice", role.name)));
            }
            roles.insert(role.name.clone(), role);
        }
        Ok(Roles { roles: Some(roles) })
    }

    /// Reads and parses a roles file.
    ///
    /// # Errors
    /// [`RolesError::Io`] when it cannot be read, else as [`Roles::parse`].
    pub fn load(path: &Path) -> Result<Roles, RolesError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| RolesError::Io { path: path.to_owned(), source })?;
        Roles::parse(&text)
    }

    /// Without a roles file: every role name exists, is SUPERUSER and REPLICATION, and has
    /// no password (so only `trust` rules let anyone in).
    pub fn permissive() -> Roles {
        Roles { roles: None }
    }

    /// Roles from a list (a later role of the same name replaces an earlier one).
    pub fn from_roles(roles: impl IntoIterator<Item = Role>) -> Roles {
        Roles { roles: Some(roles.into_iter().map(|r| (r.name.clone(), r)).collect()) }
    }

    /// The role with this exact name.
    pub fn get(&self, name: &str) -> Option<Role> {
        match &self.roles {
            Some(roles) => roles.get(name).cloned(),
            None => Some(Role { superuser: true, replication: true, ..Role::new(name) }),
        }
    }

    /// The roles of a file, by name; `None` when permissive.
    pub fn iter(&self) -> Option<impl Iterator<Item = &Role>> {
        self.roles.as_ref().map(|r| r.values())
    }
}

impl fmt::Display for Roles {
    /// The roles file text (nothing for permissive roles).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for role in self.iter().into_iter().flatten() {
            writeln!(f, "{role}")?;
        }
        Ok(())
    }
}

/// One line: `None` for blank and comment lines.
fn parse_line(line: &str) -> Result<Option<Role>, String> {
    let line = line.trim_start();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let (name, rest) = split_name(line)?;
    let mut role = Role::new(name);
    let mut words = rest.split_whitespace().take_while(|w| !w.starts_with('#'));
    if !rest.starts_with(char::is_whitespace) {
        if let Some(text) = words.next() {
            role.verifier = Some(Verifier::parse(text).ok_or_else(|| {
                format!(
                    "role \"{}\": the password must be a SCRAM-SHA-256 or md5 verifier as pg_authid.rolpassword stores it",
                    role.name
                )
            })?);
        }
    }
    for word in words {
        match word.to_ascii_uppercase().as_str() {
            "SUPERUSER" => role.superuser = true,
            "NOSUPERUSER" => role.superuser = false,
            "REPLICATION" => role.replication = true,
            "NOREPLICATION" => role.replication = false,
            "LOGIN" => role.login = true,
            "NOLOGIN" => role.login = false,
            _ => return Err(format!("role \"{}\": unknown attribute \"{word}\"", role.name)),
        }
    }
    Ok(Some(role))
}

/// The name (up to the first `:`, or a double-quoted name with `""` for `"`) and the
/// text after its `:`.
fn split_name(line: &str) -> Result<(String, &str), String> {
    let Some(mut rest) = line.strip_prefix('"') else {
        return match line.split_once(':') {
            Some(("", _)) => Err("empty role name".to_owned()),
            Some((name, rest)) => Ok((name.to_owned(), rest)),
            None => Err("expected \"name:verifier\"".to_owned()),
        };
    };
    let mut name = String::new();
    loop {
        let (part, after) = rest.split_once('"').ok_or("unterminated quoted role name")?;
        name.push_str(part);
        match after.strip_prefix('"') {
            Some(more) => {
                name.push('"');
                rest = more;
            }
            None => {
                return match after.strip_prefix(':') {
                    Some(_) if name.is_empty() => Err("empty role name".to_owned()),
                    Some(tail) => Ok((name, tail)),
                    None => Err(format!("expected \":\" after the quoted role name \"{name}\"")),
                }
            }
        }
    }
}

/// The checks after authentication: the role exists and may log in
/// (`miscinit.c: InitializeSessionUserId`), and a walsender's role is SUPERUSER or
/// REPLICATION (`postinit.c: InitPostgres`).
///
/// # Errors
/// FATAL 28000 `role "x" does not exist`, 28000 `role "x" is not permitted to log in`,
/// 42501 `must be superuser or replication role to start walsender`.
pub fn authorize(role: Option<&Role>, user: &str, walsender: bool) -> Result<(), AuthError> {
    let Some(role) = role else {
        return Err(AuthError::fatal(
            sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
            format!("role \"{user}\" does not exist"),
        ));
    };
    if !role.login {
        return Err(AuthError::fatal(
            sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
            format!("role \"{user}\" is not permitted to log in"),
        ));
    }
    if walsender && !role.superuser && !role.replication {
        return Err(AuthError::fatal(
            sqlstate::INSUFFICIENT_PRIVILEGE,
            "must be superuser or replication role to start walsender",
        ));
    }
    Ok(())
}
