//! `walstream relay` run as its own process for the tests.

use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::Result;

use crate::{free_port, wait_for, ChildGuard};

/// Starts `bin relay` (the `walstream` binary) from the server on 127.0.0.1:`upstream_port`
/// into `dir`, listening on a free loopback port, with `extra` arguments; waits until it
/// accepts connections and returns it with its port.
///
/// # Errors
/// If it cannot start, exits, or does not listen within 10 s (its stderr is in the error).
pub fn start(
    bin: &Path,
    upstream_port: u16,
    dir: &Path,
    extra: &[&str],
) -> Result<(ChildGuard, u16)> {
    let port = free_port()?;
    let mut cmd = Command::new(bin);
    cmd.arg("relay")
        .arg("-D")
        .arg(dir)
        .arg("--upstream")
        .arg(format!("host=127.0.0.1 port={upstream_port} user=postgres"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .args(extra)
        .env("RUST_BACKTRACE", "1");
    let mut child = ChildGuard::spawn_captured(&mut cmd, "walstream relay")?;
    wait_for("walstream relay listening", Duration::from_secs(10), || {
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("walstream relay exited with {status}: {}", child.stderr_text());
        }
        Ok(TcpStream::connect(("127.0.0.1", port)).is_ok().then_some(()))
    })?;
    Ok((child, port))
}
