//! A throwaway standby: a copy of the capture's base backup in a fresh temporary
//! directory, configured to stream from walstream's sender (or a real primary), on a free
//! loopback port, and stopped and removed when dropped (on success, on error and on ctrl-c
//! alike). Real PostgreSQL 15 runs as `postgres` when we are root; a walstream node
//! standby runs as we do.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// How many lines of the server log an error quotes.
const LOG_TAIL_LINES: usize = 15;

/// Where the PostgreSQL 15 programs are.
#[derive(Debug, Clone)]
pub struct PgBin {
    dir: PathBuf,
}

impl PgBin {
    /// The programs in `dir`, checked to hold an executable `postgres`.
    ///
    /// # Errors
    /// No such program.
    pub fn new(dir: &Path) -> Result<PgBin> {
        let postgres = dir.join("postgres");
        let ok = fs::metadata(&postgres)
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
        if !ok {
            bail!(
                "could not find the PostgreSQL program \"postgres\" in \"{}\" (set --pg-bin)",
                dir.display()
            );
        }
        Ok(PgBin { dir: dir.to_path_buf() })
    }

    /// The path of `postgres`.
    pub fn postgres(&self) -> PathBuf {
        self.dir.join("postgres")
    }
}

/// What a run's standby is.
#[derive(Debug, Clone)]
pub enum Target {
    /// Real PostgreSQL 15 (`postgres` from these programs).
    Pg(PgBin),
    /// A walstream node standby (`walstream node`, this program).
    Node(PathBuf),
}

/// A WAL segment to put in the standby's `pg_wal` before it starts: its file name and
/// bytes.
pub type Seed = (String, Vec<u8>);

/// The user PostgreSQL runs as when we are root.
#[derive(Debug, Clone, Copy)]
struct RunAs {
    uid: u32,
    gid: u32,
}

fn run_as() -> Result<Option<RunAs>> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let name = c"postgres";
    // SAFETY: a valid C string; the returned record is copied out at once.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        bail!("running as root, and there is no \"postgres\" user to run PostgreSQL as");
    }
    // SAFETY: non-null, points to a valid passwd record.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Ok(Some(RunAs { uid, gid }))
}

/// A running throwaway standby.
pub struct Standby {
    dir: Option<tempfile::TempDir>,
    child: Option<Child>,
    port: u16,
    node: bool,
}

/// A loopback port nobody listens on now.
///
/// # Errors
/// No port can be bound.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

impl Standby {
    /// Copies `base` into a new temporary directory (and `seed` into its `pg_wal`),
    /// configures it as a standby streaming from `primary_conninfo` with `settings` over
    /// the backup's own, and starts it.
    ///
    /// # Errors
    /// Copying fails, or the server cannot be started.
    pub fn start(
        target: &Target,
        base: &Path,
        settings: &[(String, String)],
        primary_conninfo: &str,
        seed: Option<&Seed>,
    ) -> Result<Standby> {
        let owner = match target {
            Target::Pg(_) => run_as()?,
            Target::Node(_) => None,
        };
        let tmp = tempfile::Builder::new()
            .prefix("walstream-replay-bench.")
            .tempdir()
            .context("could not create a temporary directory")?;
        let node = matches!(target, Target::Node(_));
        let mut standby = Standby { dir: Some(tmp), child: None, port: free_port()?, node };
        let root = standby.root().to_path_buf();
        let data = standby.data_dir();
        copy_tree(base, &data)
            .with_context(|| format!("could not copy the base backup \"{}\"", base.display()))?;
        fs::set_permissions(&data, fs::Permissions::from_mode(0o700))?;
        if let Some((name, bytes)) = seed {
            fs::create_dir_all(data.join("pg_wal"))?;
            fs::write(data.join("pg_wal").join(name), bytes)?;
        }
        standby.configure(settings, primary_conninfo)?;
        if let Some(o) = owner {
            chown_tree(&root, o)?;
        }
        let log = fs::File::create(standby.log_path())?;
        if let Some(o) = owner {
            std::os::unix::fs::chown(standby.log_path(), Some(o.uid), Some(o.gid))?;
        }
        let (program, mut cmd) = match target {
            Target::Pg(bin) => {
                let mut cmd = Command::new(bin.postgres());
                cmd.arg("-D").arg(&data);
                (bin.postgres(), cmd)
            }
            Target::Node(exe) => {
                let mut cmd = Command::new(exe);
                cmd.arg("node").arg("-D").arg(&data);
                cmd.arg("--listen").arg(format!("127.0.0.1:{}", standby.port));
                (exe.clone(), cmd)
            }
        };
        cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        // Its own process group: a ctrl-c on the terminal is ours to handle.
        cmd.process_group(0);
        if let Some(o) = owner {
            cmd.uid(o.uid).gid(o.gid).env("USER", "postgres").env("LOGNAME", "postgres");
        }
        let child =
            cmd.spawn().with_context(|| format!("could not start \"{}\"", program.display()))?;
        standby.child = Some(child);
        Ok(standby)
    }

    fn configure(&self, settings: &[(String, String)], primary_conninfo: &str) -> Result<()> {
        let data = self.data_dir();
        let root = self.root().display().to_string();
        let mut conf = String::from("\n# walstream replay-bench\n");
        let conninfo = ("primary_conninfo", primary_conninfo.to_string());
        let fixed: Vec<(&str, String)> = if self.node {
            // The node knows fewer settings; it listens where --listen says.
            vec![conninfo, ("wal_retrieve_retry_interval", "500ms".into())]
        } else {
            vec![
                ("port", self.port.to_string()),
                ("listen_addresses", "127.0.0.1".into()),
                ("unix_socket_directories", root),
                conninfo,
                ("primary_slot_name", String::new()),
                ("restore_command", String::new()),
                ("archive_mode", "off".into()),
                ("hot_standby", "on".into()),
                ("wal_retrieve_retry_interval", "500ms".into()),
                ("logging_collector", "off".into()),
                ("log_destination", "stderr".into()),
            ]
        };
        for (k, v) in
            fixed.iter().map(|(k, v)| (k.to_string(), v.clone())).chain(settings.iter().cloned())
        {
            conf.push_str(&format!("{k} = {}\n", quote(&v)));
        }
        use std::io::Write;
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data.join("postgresql.auto.conf"))?
            .write_all(conf.as_bytes())?;
        if !self.node {
            // Only we connect, over loopback (the node's initdb already says so).
            fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\nhost all all 127.0.0.1/32 trust\n",
            )?;
        }
        fs::write(data.join("standby.signal"), "")?;
        Ok(())
    }

    /// The temporary directory (data directory, log, socket).
    pub fn root(&self) -> &Path {
        self.dir.as_ref().map(|d| d.path()).unwrap_or(Path::new("/nonexistent"))
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.root().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.root().join("postgres.log")
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether this is a walstream node standby.
    pub fn is_node(&self) -> bool {
        self.node
    }

    /// The postmaster's (or the node's) pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The process that replays, looked up in `proc`: PostgreSQL's startup process, or
    /// the node itself (its redo is one of its threads).
    pub fn replay_pid(&self, proc: &Path) -> Option<u32> {
        let pid = self.pid()?;
        if self.node {
            Some(pid)
        } else {
            super::sample::startup_pid(proc, pid)
        }
    }

    /// The last lines of the server log.
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }

    /// Fails, with the log's last lines, when the postmaster has exited.
    ///
    /// # Errors
    /// It exited.
    pub fn check_alive(&mut self) -> Result<()> {
        let Some(child) = self.child.as_mut() else { bail!("the standby is not running") };
        if let Some(status) = child.try_wait()? {
            self.child = None;
            bail!("the standby exited ({status}); the last lines of its log:\n{}", self.log_tail());
        }
        Ok(())
    }

    /// Stops the standby (immediate shutdown, then SIGKILL after 10 s) and removes its
    /// directory.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), libc::SIGQUIT);
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() >= deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
    }
}

impl Drop for Standby {
    fn drop(&mut self) {
        self.stop();
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill has no memory preconditions; pid is our own child's.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Copies a directory tree (files, directories, symlinks as they are).
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let ty = entry.file_type()?;
        if ty.is_dir() {
            copy_tree(&src, &dst)?;
        } else if ty.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&src)?, &dst)?;
        } else {
            fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

fn chown_tree(path: &Path, o: RunAs) -> std::io::Result<()> {
    std::os::unix::fs::lchown(path, Some(o.uid), Some(o.gid))?;
    if fs::symlink_metadata(path)?.is_dir() {
        for entry in fs::read_dir(path)? {
            chown_tree(&entry?.path(), o)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_postgres_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = PgBin::new(dir.path()).unwrap_err().to_string();
        assert!(e.contains("could not find the PostgreSQL program \"postgres\""), "{e}");
    }

    #[test]
    fn values_are_quoted_as_postgresql_conf_wants() {
        assert_eq!(quote("it's"), "'it''s'");
    }

    #[test]
    fn trees_copy() {
        let a = tempfile::tempdir().unwrap();
        fs::create_dir(a.path().join("sub")).unwrap();
        fs::write(a.path().join("sub/f"), "x").unwrap();
        let b = tempfile::tempdir().unwrap();
        copy_tree(a.path(), &b.path().join("c")).unwrap();
        assert_eq!(fs::read_to_string(b.path().join("c/sub/f")).unwrap(), "x");
    }
}
