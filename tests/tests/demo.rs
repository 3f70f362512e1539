//! `walstream demo` (issue 8, section 5): with no PostgreSQL at all, a primary, a standby
//! made through BASE_BACKUP, clients writing; it ends with the tables equal on both and
//! the temporary directory gone.

use std::process::Command;

#[test]
fn demo_runs_and_the_standby_matches_the_primary() {
    let out = Command::new(env!("CARGO_BIN_EXE_walstream"))
        .args(["demo", "--seconds", "2", "--clients", "2"])
        .env_remove("WALSTREAM_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "walstream demo failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stdout.contains("tables:            the standby's tables match the primary's"),
        "{stdout}"
    );
    assert!(stdout.contains("accounts") && stdout.contains("equal"), "{stdout}");
    assert!(stdout.contains(" commits/s "), "progress lines: {stdout}");
    let dir = stdout
        .lines()
        .find_map(|l| l.strip_prefix("primary: "))
        .and_then(|rest| rest.split(" listening").next())
        .and_then(|p| std::path::Path::new(p).parent().map(|d| d.to_path_buf()))
        .unwrap_or_else(|| panic!("no primary directory in:\n{stdout}"));
    assert!(!dir.exists(), "{} was not removed", dir.display());
}
