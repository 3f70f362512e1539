//! `walstream initdb`: a new data directory (`bin/initdb/initdb.c`): the configuration
//! files, the bootstrap superuser, the first WAL segment with its shutdown checkpoint, the
//! control file and an empty checkpoint state.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use walstream_protocol::WalSegSize;
use walstream_sender::auth::Role;

use crate::checkpointer::CheckpointState;
use crate::conf::{write_file_durably, AUTO_CONF_HEADER};
use crate::datadir::PG_MAJOR_VERSION;
use crate::error::NodeError;
use crate::xlog::{bootstrap, ControlFile};

/// The roles file in `global/` (`name:verifier ATTRIBUTES` lines, as `walstream serve
/// --passwords` reads them).
pub const ROLES_FILE: &str = "walstream_roles";

/// What to make.
#[derive(Debug, Clone)]
pub struct InitdbOptions {
    /// The data directory (created if missing; must be empty if present).
    pub dir: PathBuf,
    /// `--wal-segsize` in MB: a power of two from 1 to 1024 (default 16).
    pub wal_segsize_mb: u32,
    /// `-U`: the bootstrap superuser's name.
    pub superuser: String,
}

/// Why initdb refused, with initdb's texts.
#[derive(Debug, thiserror::Error)]
pub enum InitdbError {
    /// The directory has files in it (`initdb.c: create_data_directory`).
    #[error("directory \"{}\" exists but is not empty", .0.display())]
    NotEmpty(PathBuf),
    /// `--wal-segsize` is not a power of two from 1 to 1024.
    #[error("argument of --wal-segsize must be a power of 2 between 1 and 1024")]
    SegSize,
    /// The superuser's name starts with `pg_` (`initdb.c: main`).
    #[error("superuser name \"{0}\" is disallowed; role names cannot begin with \"pg_\"")]
    ReservedName(String),
    /// Making the files failed.
    #[error(transparent)]
    Node(#[from] NodeError),
}

impl InitdbError {
    /// initdb's hint for this error, if it gives one.
    pub fn hint(&self) -> Option<String> {
        match self {
            InitdbError::NotEmpty(d) => Some(format!(
                "If you want to create a new database system, either remove or empty the \
                 directory \"{}\" or run initdb with an argument other than \"{}\".",
                d.display(),
                d.display()
            )),
            _ => None,
        }
    }
}

/// The `postgresql.conf` initdb writes: PostgreSQL's defaults, commented.
fn postgresql_conf(seg: WalSegSize) -> String {
    format!(
        "# walstream node configuration file, in PostgreSQL's postgresql.conf syntax.\n\
         # Settings take PostgreSQL's names, units and defaults; `SHOW name` reads them.\n\
         # wal_segment_size is {} (fixed by initdb).\n\
         \n\
         #listen_addresses = 'localhost'\n\
         #port = 5432\n\
         #max_connections = 100\n\
         #max_wal_senders = 10\n\
         #max_replication_slots = 10\n\
         #synchronous_commit = on\n\
         #fsync = on\n\
         #wal_writer_delay = 200ms\n\
         #checkpoint_timeout = 5min\n\
         #max_wal_size = 1GB\n\
         #wal_keep_size = 0\n\
         #wal_sender_timeout = 60s\n\
         #hot_standby = on\n\
         #primary_conninfo = ''\n\
         #primary_slot_name = ''\n\
         #synchronous_standby_names = ''\n",
        seg.show()
    )
}

/// The `pg_hba.conf` initdb writes: trust from loopback, for databases and replication
/// (initdb's default `trust`, without Unix sockets, which the node does not listen on).
const PG_HBA_CONF: &str = "\
# TYPE  DATABASE        USER            ADDRESS                 METHOD
host    all             all             127.0.0.1/32            trust
host    all             all             ::1/128                 trust
host    replication     all             127.0.0.1/32            trust
host    replication     all             ::1/128                 trust
";

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> NodeError {
    let path = path.to_path_buf();
    move |source| NodeError::Io { op, path, source }
}

fn check(opts: &InitdbOptions) -> Result<WalSegSize, InitdbError> {
    let mb = opts.wal_segsize_mb;
    if !mb.is_power_of_two() || mb > 1024 {
        return Err(InitdbError::SegSize);
    }
    if opts.superuser.starts_with("pg_") {
        return Err(InitdbError::ReservedName(opts.superuser.clone()));
    }
    WalSegSize::new(u64::from(mb) << 20).map_err(|_| InitdbError::SegSize)
}

fn make_dir(dir: &Path) -> Result<(), InitdbError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(InitdbError::NotEmpty(dir.to_path_buf()));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(io("create directory", dir))?;
        }
        Err(e) => return Err(io("access directory", dir)(e).into()),
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(io("change permissions of", dir))?;
    Ok(())
}

/// Makes a data directory.
///
/// # Errors
/// [`InitdbError`] with initdb's texts; file errors.
pub fn initdb(opts: &InitdbOptions, now: SystemTime) -> Result<ControlFile, InitdbError> {
    let seg = check(opts)?;
    let dir = opts.dir.as_path();
    make_dir(dir)?;
    // pg_tblspc stays empty (no tablespaces), but pg_basebackup walks it to fsync a copy.
    for sub in ["global", "base", "pg_wal", "pg_replslot", "pg_tblspc"] {
        let p = dir.join(sub);
        std::fs::create_dir_all(&p).map_err(io("create directory", &p))?;
    }
    let write = |name: &str, text: &str| {
        write_file_durably(&dir.join(name), text).map_err(|e| NodeError::State(e.to_string()))
    };
    write("PG_VERSION", &format!("{PG_MAJOR_VERSION}\n"))?;
    write("postgresql.conf", &postgresql_conf(seg))?;
    write("postgresql.auto.conf", AUTO_CONF_HEADER)?;
    write("pg_hba.conf", PG_HBA_CONF)?;
    let mut su = Role::new(&opts.superuser);
    su.superuser = true;
    su.replication = true;
    write(&format!("global/{ROLES_FILE}"), &format!("{su}\n"))?;
    let control = bootstrap(dir, seg, now).map_err(NodeError::from)?;
    CheckpointState::empty(control.redo(), control.next_xid() as u32).write(dir)?;
    Ok(control)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::read_data_dir;
    use crate::datadir::DataDir;
    use crate::settings::NodeSettings;

    fn opts(dir: &Path) -> InitdbOptions {
        InitdbOptions { dir: dir.to_path_buf(), wal_segsize_mb: 1, superuser: "alice".into() }
    }

    #[test]
    fn makes_a_data_directory_the_node_accepts() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let control = initdb(&opts(&dir), SystemTime::now()).unwrap();
        let d = DataDir::open(&dir).unwrap();
        assert_eq!(d.signal_mode(), crate::datadir::SignalMode::Primary);
        let settings = NodeSettings::load(&read_data_dir(&dir).unwrap(), &[]).unwrap();
        assert_eq!(settings.show("port").as_deref(), Some("5432"));
        assert_eq!(control.seg_size.bytes(), 1 << 20);
        let roles =
            walstream_sender::auth::Roles::load(&dir.join("global").join(ROLES_FILE)).unwrap();
        assert!(format!("{roles:?}").contains("alice"));
        assert!(walstream_sender::hba::HbaFile::load(&dir.join("pg_hba.conf")).is_ok());
        let state = CheckpointState::read(&dir).unwrap().unwrap();
        assert_eq!(state.redo, control.redo());
        let seg = dir.join("pg_wal").join("000000010000000000000001");
        assert_eq!(std::fs::metadata(seg).unwrap().len(), 1 << 20);
    }

    #[test]
    fn refuses_what_initdb_refuses() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("x"), "").unwrap();
        let e = initdb(&opts(tmp.path()), SystemTime::now()).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "directory \"{}\" exists but is not empty",
                tmp.path().display()
            )),
            "{e}"
        );
        let mut o = opts(&tmp.path().join("d"));
        o.wal_segsize_mb = 3;
        assert_eq!(
            initdb(&o, SystemTime::now()).unwrap_err().to_string(),
            "argument of --wal-segsize must be a power of 2 between 1 and 1024"
        );
        o.wal_segsize_mb = 16;
        o.superuser = "pg_x".into();
        assert!(initdb(&o, SystemTime::now())
            .unwrap_err()
            .to_string()
            .contains("cannot begin with \"pg_\""));
    }
}
