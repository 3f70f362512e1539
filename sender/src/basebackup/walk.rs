//! Which files of the data directory go into the backup, and how they are named
//! (`basebackup.c: sendDir`, PostgreSQL 15's exclusion lists).

use std::fs::Metadata;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use walstream_protocol::wire::{sqlstate, ErrorFields};

use super::tar::{self, MemberKind};

/// Directories whose contents are left out, the directory itself kept
/// (`excludeDirContents`).
const EXCLUDE_DIR_CONTENTS: [&str; 7] = [
    "pg_stat_tmp",
    "pg_replslot",
    "pg_dynshmem",
    "pg_notify",
    "pg_serial",
    "pg_snapshots",
    "pg_subtrans",
];

/// Files left out, with whether the name is a prefix (`excludeFiles`).
const EXCLUDE_FILES: [(&str, bool); 8] = [
    ("postgresql.auto.conf.tmp", false),
    ("current_logfiles.tmp", false),
    ("pg_internal.init", true),
    ("backup_label", false),
    ("tablespace_map", false),
    ("backup_manifest", false),
    ("postmaster.pid", false),
    ("postmaster.opts", false),
];

/// `PG_TEMP_FILE_PREFIX`: temporary files and directories are left out.
const TEMP_PREFIX: &[u8] = b"pgsql_tmp";

/// `pg_dir_create_mode`.
const DIR_MODE: u32 = 0o700;

/// One member of the archive, found in the data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The file to read (regular files only).
    pub path: PathBuf,
    /// The member: its name in the archive (relative to the data directory) and stat.
    pub member: tar::Member,
}

impl Entry {
    /// Bytes this member takes in the archive: header, content, padding.
    pub fn archive_size(&self) -> u64 {
        match self.member.kind {
            MemberKind::File { size } => tar::BLOCK as u64 + size + tar::padding(size) as u64,
            _ => tar::BLOCK as u64,
        }
    }
}

/// What a walk found: the members in order, and the warnings to send.
#[derive(Debug, Default)]
pub struct Walk {
    /// The members, parents before children.
    pub entries: Vec<Entry>,
    /// `WARNING`s (`skipping special file`).
    pub warnings: Vec<ErrorFields>,
}

/// `%m`: the error's text without Rust's ` (os error N)`.
pub fn strerror(e: &io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// `errcode_for_file_access`.
pub fn file_access_code(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::NotFound => sqlstate::UNDEFINED_FILE,
        io::ErrorKind::PermissionDenied => sqlstate::INSUFFICIENT_PRIVILEGE,
        _ => sqlstate::IO_ERROR,
    }
}

/// An ERROR about `what` on `path`: `could not <what> "<path>": %m`.
pub fn file_error(what: &str, path: &str, e: &io::Error) -> ErrorFields {
    ErrorFields::error(file_access_code(e), format!("could not {what} \"{path}\": {}", strerror(e)))
}

/// The member for `meta` named `name` (a link's target read by the caller).
pub fn member(name: Vec<u8>, meta: &Metadata, kind: MemberKind) -> tar::Member {
    let mode = match kind {
        MemberKind::Dir if !meta.is_dir() => DIR_MODE,
        _ => meta.mode() & 0o7777,
    };
    tar::Member { name, kind, mode, uid: meta.uid(), gid: meta.gid(), mtime: meta.mtime() }
}

fn dir_member(name: Vec<u8>, meta: &Metadata) -> tar::Member {
    // convert_link_to_directory: a link is sent as a directory of pg_dir_create_mode.
    member(name, meta, MemberKind::Dir)
}

fn excluded_file(name: &[u8]) -> bool {
    EXCLUDE_FILES.iter().any(|(f, prefix)| {
        if *prefix {
            name.starts_with(f.as_bytes())
        } else {
            name == f.as_bytes()
        }
    })
}

/// What a walk leaves out besides PostgreSQL's lists.
pub struct Skip<'a> {
    /// The control file (sent separately, last).
    pub control_file: &'a [u8],
    /// The server's own exclusions.
    pub exclude: &'a dyn Fn(&[u8]) -> bool,
}

/// Walks `data_dir` as `sendDir(".")` does; the control file is left for the end.
///
/// # Errors
/// A directory that cannot be read, a file that cannot be stat'ed (a vanished one is
/// skipped), a tablespace (walstream backs up no tablespaces).
pub fn walk(data_dir: &Path, skip: &Skip<'_>) -> Result<Walk, ErrorFields> {
    let mut walk = Walk::default();
    walk_dir(data_dir, b"", skip, &mut walk)?;
    Ok(walk)
}

/// A relation file name, `OID[_fork][.segment]` (`parse_filename_for_nontemp_relation`):
/// the OID's length and whether the fork is `init`.
fn relation_file(name: &[u8]) -> Option<(usize, bool)> {
    let oid = name.iter().take_while(|b| b.is_ascii_digit()).count();
    if oid == 0 || oid > 10 {
        return None;
    }
    let mut rest = &name[oid..];
    let mut init = false;
    if let Some(r) = rest.strip_prefix(b"_") {
        let fork = ["fsm", "vm", "init"].into_iter().find(|f| r.starts_with(f.as_bytes()))?;
        init = fork == "init";
        rest = &r[fork.len()..];
    }
    if let Some(seg) = rest.strip_prefix(b".") {
        let digits = seg.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || digits > 10 || digits != seg.len() {
            return None;
        }
        rest = &[];
    }
    rest.is_empty().then_some((oid, init))
}

/// `looks_like_temp_rel_name`: `tBACKENDID_OID[_fork][.segment]`.
fn temp_relation(name: &[u8]) -> bool {
    let Some(rest) = name.strip_prefix(b"t") else { return false };
    let backend = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if backend == 0 {
        return false;
    }
    match rest[backend..].strip_prefix(b"_") {
        Some(r) => relation_file(r).is_some(),
        None => false,
    }
}

/// Whether `rel` is a database directory (`base/OID`), where unlogged relations' forks
/// other than `init` and temporary relations are left out.
fn is_db_dir(rel: &[u8]) -> bool {
    rel.strip_prefix(b"base/")
        .is_some_and(|oid| !oid.is_empty() && oid.iter().all(u8::is_ascii_digit))
}

/// Whether the file `name` of database directory `dir` is left out: a fork of an
/// unlogged relation (one with an init fork) other than the init fork, or a temporary
/// relation.
fn excluded_relation(dir: &Path, name: &[u8]) -> bool {
    if let Some((oid, init)) = relation_file(name) {
        if !init {
            let mut init_fork = name[..oid].to_vec();
            init_fork.extend_from_slice(b"_init");
            if std::fs::symlink_metadata(dir.join(std::ffi::OsStr::from_bytes(&init_fork))).is_ok()
            {
                return true;
            }
        }
    }
    temp_relation(name)
}

fn walk_dir(
    data_dir: &Path,
    rel: &[u8],
    skip: &Skip<'_>,
    walk: &mut Walk,
) -> Result<(), ErrorFields> {
    let shown = |rel: &[u8]| {
        if rel.is_empty() {
            ".".to_string()
        } else {
            format!("./{}", String::from_utf8_lossy(rel))
        }
    };
    let dir = data_dir.join(std::ffi::OsStr::from_bytes(rel));
    let read =
        std::fs::read_dir(&dir).map_err(|e| file_error("open directory", &shown(rel), &e))?;
    let mut names = Vec::new();
    for de in read {
        let de = de.map_err(|e| file_error("read directory", &shown(rel), &e))?;
        names.push(de.file_name());
    }
    names.sort();
    for name in names {
        let nb = name.as_bytes();
        if nb.starts_with(TEMP_PREFIX) || excluded_file(nb) {
            continue;
        }
        if is_db_dir(rel) && excluded_relation(&dir, nb) {
            continue;
        }
        let child: Vec<u8> = if rel.is_empty() { nb.to_vec() } else { [rel, b"/", nb].concat() };
        let path = dir.join(&name);
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(file_error("stat file or directory", &shown(&child), &e)),
        };
        if child == skip.control_file || (skip.exclude)(&child) {
            continue;
        }
        if child == b"pg_wal" {
            // The directory (even when pg_wal is a link) and an empty archive_status,
            // named as PostgreSQL 15 names it.
            walk.entries.push(Entry { path: path.clone(), member: dir_member(child, &meta) });
            walk.entries.push(Entry {
                path,
                member: dir_member(b"./pg_wal/archive_status".to_vec(), &meta),
            });
            continue;
        }
        if EXCLUDE_DIR_CONTENTS.iter().any(|d| d.as_bytes() == nb) {
            walk.entries.push(Entry { path, member: dir_member(child, &meta) });
            continue;
        }
        let ft = meta.file_type();
        if rel == b"pg_tblspc" && (ft.is_symlink() || ft.is_dir()) {
            return Err(ErrorFields::error(
                sqlstate::FEATURE_NOT_SUPPORTED,
                format!(
                    "tablespace \"{}\" cannot be backed up: walstream does not back up tablespaces",
                    String::from_utf8_lossy(nb)
                ),
            ));
        }
        if ft.is_symlink() {
            let target = std::fs::read_link(&path)
                .map_err(|e| file_error("read symbolic link", &shown(&child), &e))?;
            let kind = MemberKind::Symlink { target: target.as_os_str().as_bytes().to_vec() };
            walk.entries.push(Entry { path, member: member(child, &meta, kind) });
        } else if ft.is_dir() {
            walk.entries.push(Entry { path, member: dir_member(child.clone(), &meta) });
            walk_dir(data_dir, &child, skip, walk)?;
        } else if ft.is_file() {
            let kind = MemberKind::File { size: meta.len() };
            walk.entries.push(Entry { path, member: member(child, &meta, kind) });
        } else {
            walk.warnings.push(ErrorFields::new(
                walstream_protocol::wire::Severity::Warning,
                sqlstate::WARNING,
                format!("skipping special file \"{}\"", shown(&child)),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relation_file_names() {
        assert_eq!(relation_file(b"1259"), Some((4, false)));
        assert_eq!(relation_file(b"1259_vm"), Some((4, false)));
        assert_eq!(relation_file(b"1259_init.2"), Some((4, true)));
        assert_eq!(relation_file(b"1259.12"), Some((4, false)));
        for bad in
            [&b"PG_VERSION"[..], b"1259_main", b"1259.", b"1259_fsmx", b"pg_filenode.map", b""]
        {
            assert_eq!(relation_file(bad), None, "{bad:?}");
        }
        assert!(temp_relation(b"t3_16400") && temp_relation(b"t12_1_vm.3"));
        assert!(!temp_relation(b"t_1") && !temp_relation(b"16400") && !temp_relation(b"t3_"));
        assert!(is_db_dir(b"base/1") && !is_db_dir(b"base") && !is_db_dir(b"global"));
    }

    #[test]
    fn leaves_out_what_postgres_15_leaves_out() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        for dir in [
            "base/1",
            "global",
            "pg_wal/archive_status",
            "pg_notify",
            "pg_stat_tmp",
            "pg_tblspc",
            "base/1/pgsql_tmp",
        ] {
            std::fs::create_dir_all(p.join(dir)).unwrap();
        }
        for f in [
            "PG_VERSION",
            "base/1/1259",
            "base/1/pg_internal.init",
            "global/pg_control",
            "global/1262",
            "pg_wal/000000010000000000000001",
            "pg_wal/archive_status/x.done",
            "pg_notify/0000",
            "pg_stat_tmp/x",
            "postmaster.pid",
            "postmaster.opts",
            "backup_label",
            "tablespace_map",
            "backup_manifest",
            "pgsql_tmp123",
            "postgresql.auto.conf.tmp",
            "current_logfiles.tmp",
            "postgresql.conf",
        ] {
            std::fs::write(p.join(f), b"x").unwrap();
        }
        let none = |_: &[u8]| false;
        let pg = Skip { control_file: b"global/pg_control", exclude: &none };
        let w = walk(p, &pg).unwrap();
        let names: Vec<String> = w
            .entries
            .iter()
            .map(|e| {
                let mut n = String::from_utf8(e.member.name.clone()).unwrap();
                if e.member.kind == MemberKind::Dir {
                    n.push('/');
                }
                n
            })
            .collect();
        assert_eq!(
            names,
            [
                "PG_VERSION",
                "base/",
                "base/1/",
                "base/1/1259",
                "global/",
                "global/1262",
                "pg_notify/",
                "pg_stat_tmp/",
                "pg_tblspc/",
                "pg_wal/",
                "./pg_wal/archive_status/",
                "postgresql.conf",
            ]
        );
        // Unlogged relations keep only their init fork; temporary relations go.
        for f in
            ["16384", "16384_fsm", "16384.1", "16384_init", "16390", "t3_16400", "t3_16400_fsm"]
        {
            std::fs::write(p.join("base/1").join(f), b"x").unwrap();
        }
        let w = walk(p, &pg).unwrap();
        let in_db: Vec<String> = w
            .entries
            .iter()
            .filter_map(|e| {
                let n = String::from_utf8(e.member.name.clone()).unwrap();
                n.strip_prefix("base/1/").map(str::to_string)
            })
            .collect();
        assert_eq!(in_db, ["1259", "16384_init", "16390"]);
        std::fs::create_dir(p.join("pg_tblspc/16384")).unwrap();
        assert_eq!(walk(p, &pg).unwrap_err().code, "0A000");
        std::fs::remove_dir(p.join("pg_tblspc/16384")).unwrap();
        // A server's own control file and exclusions.
        let own = |rel: &[u8]| rel.ends_with(b".tmp");
        std::fs::write(p.join("base/state.tmp"), b"x").unwrap();
        let w = walk(p, &Skip { control_file: b"PG_VERSION", exclude: &own }).unwrap();
        let names: Vec<&[u8]> = w.entries.iter().map(|e| e.member.name.as_slice()).collect();
        assert!(!names.contains(&&b"PG_VERSION"[..]) && !names.contains(&&b"base/state.tmp"[..]));
        assert!(names.contains(&&b"global/pg_control"[..]));
    }
}
