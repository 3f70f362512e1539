//! `walstream promote -D DIR`: asks a running standby node to promote, as `pg_ctl promote`
//! does — the `promote` file in the data directory, SIGUSR1 to the node's process, then
//! (unless `--no-wait`) waiting until the control file says "in production".

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use walstream_node::datadir::{LOCK_FILE, PROMOTE_SIGNAL_FILE, STANDBY_SIGNAL_FILE};
use walstream_node::xlog::{ControlFile, DbState};

/// Arguments of `walstream promote`.
#[derive(Args, Debug)]
pub struct PromoteArgs {
    /// The standby's data directory.
    #[arg(short = 'D', value_name = "DATADIR")]
    pgdata: PathBuf,
    /// Do not wait for the promotion to complete (`pg_ctl -W`).
    #[arg(short = 'W', long = "no-wait")]
    no_wait: bool,
    /// Seconds to wait (`pg_ctl -t`, default 60).
    #[arg(short = 't', long = "timeout", value_name = "SECS", default_value_t = 60)]
    timeout: u64,
}

/// Why `walstream promote` failed, in `pg_ctl`'s words.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
enum PromoteError {
    #[error("PID file \"{0}\" does not exist\nIs server running?")]
    NoPidFile(String),
    #[error("invalid data in PID file \"{0}\"")]
    BadPidFile(String),
    #[error("cannot promote server; server is not in standby mode")]
    NotStandby,
    #[error("could not create promote signal file \"{0}\": {1}")]
    SignalFile(String, String),
    #[error("could not send promote signal (PID: {0}): {1}")]
    Signal(i32, String),
    #[error("server did not promote in time")]
    Timeout,
}

/// The node's pid: the first line of `postmaster.pid`.
fn node_pid(dir: &Path) -> Result<i32, PromoteError> {
    let path = dir.join(LOCK_FILE);
    let text = std::fs::read_to_string(&path)
        .map_err(|_| PromoteError::NoPidFile(path.display().to_string()))?;
    text.lines()
        .next()
        .and_then(|l| l.trim().parse::<i32>().ok())
        .filter(|p| *p > 0)
        .ok_or_else(|| PromoteError::BadPidFile(path.display().to_string()))
}

/// Writes the signal file and signals the node.
fn request(dir: &Path) -> Result<(), PromoteError> {
    let pid = node_pid(dir)?;
    if !dir.join(STANDBY_SIGNAL_FILE).exists() {
        return Err(PromoteError::NotStandby);
    }
    let file = dir.join(PROMOTE_SIGNAL_FILE);
    std::fs::write(&file, b"")
        .map_err(|e| PromoteError::SignalFile(file.display().to_string(), e.to_string()))?;
    // SAFETY: kill(2) with a pid read from the lock file and a constant signal.
    if unsafe { libc::kill(pid, libc::SIGUSR1) } != 0 {
        let e = std::io::Error::last_os_error();
        let _ = std::fs::remove_file(&file);
        return Err(PromoteError::Signal(pid, e.to_string()));
    }
    Ok(())
}

fn in_production(dir: &Path) -> bool {
    ControlFile::read(dir).is_ok_and(|c| c.state == DbState::InProduction)
}

/// Runs `walstream promote`.
pub fn main(args: PromoteArgs) -> ExitCode {
    let fail = |e: PromoteError| {
        eprintln!("walstream promote: {e}");
        ExitCode::FAILURE
    };
    if let Err(e) = request(&args.pgdata) {
        return fail(e);
    }
    if args.no_wait {
        println!("server promoting");
        return ExitCode::SUCCESS;
    }
    print!("waiting for server to promote...");
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    loop {
        if in_production(&args.pgdata) {
            println!(" done\nserver promoted");
            return ExitCode::SUCCESS;
        }
        if Instant::now() >= deadline {
            println!(" stopped waiting");
            return fail(PromoteError::Timeout);
        }
        print!(".");
        use std::io::Write;
        let _ = std::io::stdout().flush();
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_without_a_running_standby_is_refused_as_pg_ctl_does() {
        let dir = tempfile::tempdir().unwrap();
        let pid = dir.path().join(LOCK_FILE).display().to_string();
        assert_eq!(request(dir.path()), Err(PromoteError::NoPidFile(pid)));
        std::fs::write(dir.path().join(LOCK_FILE), format!("{}\n", std::process::id())).unwrap();
        let e = request(dir.path()).unwrap_err();
        assert_eq!(e.to_string(), "cannot promote server; server is not in standby mode");
        assert!(!dir.path().join(PROMOTE_SIGNAL_FILE).exists());
    }
}
