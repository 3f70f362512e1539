//! What the fault tests share: reproducible random moments, and the records of a WAL
//! range with the LSNs named in a log.

use std::path::Path;

use anyhow::Result;
use walstream_protocol::Lsn;

use crate::{pg_bin, pg_command, run_ok};

/// xorshift64*: fault moments reproducible from a printed seed, without a dependency.
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    /// Seeded from the environment variable `var` (a number), else the clock; the seed is
    /// printed as `VAR=seed` so a run can be repeated.
    pub fn from_env(var: &str) -> Self {
        let seed = std::env::var(var).ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
        eprintln!("{var}={seed}");
        Rng(seed.max(1))
    }

    /// Uniform-ish in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        lo + self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % (hi - lo + 1)
    }
}

/// A record of a WAL range, from pg_waldump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    /// Where it starts.
    pub lsn: Lsn,
    /// `xl_tot_len`.
    pub tot_len: u64,
}

/// pg_waldump's records of `wal_dir` in `[from, to)`, at most `limit` of them.
///
/// # Errors
/// If pg_waldump fails.
pub fn waldump_records(wal_dir: &Path, from: Lsn, to: Lsn, limit: usize) -> Result<Vec<Record>> {
    let out = run_ok(pg_command(pg_bin("pg_waldump")).arg("-p").arg(wal_dir).args([
        "-n",
        &limit.to_string(),
        "-s",
        &from.to_string(),
        "-e",
        &to.to_string(),
    ]))?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter_map(|line| {
            // rmgr: Heap len (rec/tot): 59/ 59, tx: 738, lsn: 0/0191D0D8, prev 0/..., desc: ...
            let tot_len = line
                .split_once("len (rec/tot):")
                .and_then(|(_, r)| r.split_once('/'))
                .and_then(|(_, r)| r.split(',').next())
                .and_then(|t| t.trim().parse().ok())?;
            let lsn = line
                .split_once(" lsn: ")
                .and_then(|(_, r)| r.split(',').next())
                .and_then(|t| t.trim().parse().ok())?;
            Some(Record { lsn, tot_len })
        })
        .collect())
}

/// Every LSN (`X/X`) written in `text`.
pub fn lsns_in(text: &str) -> Vec<Lsn> {
    text.split(|c: char| !(c.is_ascii_hexdigit() || c == '/'))
        .filter(|t| t.contains('/'))
        .filter_map(|t| t.parse().ok())
        .collect()
}
