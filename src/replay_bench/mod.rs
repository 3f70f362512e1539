//! `walstream replay-bench`: how fast does a standby replay this WAL?
//!
//! # Layout
//! - [`record`]: a capture from a running PostgreSQL 15 or walstream node (base backup + WAL
//!   streamed alongside).
//! - [`capture`]: the capture on disk, its manifest, the checks that its parts match, the WAL scan.
//! - [`parse`]: the file formats read (manifest, backup_label, pg_control, /proc stat), no I/O.
//! - [`paced`]: the capture's WAL made available all at once or at its original pace, and
//!   how closely a run kept the original times.
//! - [`standby`]: a throwaway standby (real PostgreSQL or a walstream node) made from the
//!   capture's base backup.
//! - [`sample`]: the standby sampled every 100 ms (SQL and `/proc`).
//! - [`run`]: the runs, config by config, alternately.
//! - [`report`]: the numbers: percentiles, medians, ratios.
//! - [`plot`]: the PNG and SVG plot.

pub mod capture;
pub mod paced;
pub mod parse;
pub mod plot;
pub mod record;
pub mod report;
pub mod run;
pub mod sample;
pub mod standby;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use walstream_protocol::wire::ReplicationMode;
use walstream_receiver::conninfo::ConnInfo;

use self::capture::Capture;
use self::paced::Pace;
use self::report::ConfigSummary;
use self::run::{BenchConfig, RunPlan, RunRecord};
use self::standby::{PgBin, Target};

/// Arguments of `walstream replay-bench`.
#[derive(Args, Debug)]
pub struct ReplayBenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// Record a capture: a base backup of a running PostgreSQL 15 (or walstream node) and
    /// its WAL while the workload runs, until ctrl-c or --seconds.
    Record(RecordArgs),
    /// Replay a capture on throwaway standbys (PostgreSQL or walstream node) and measure it.
    Run(RunArgs),
}

/// Arguments of `replay-bench record`.
#[derive(Args, Debug)]
struct RecordArgs {
    /// Connection string of the server to record.
    #[arg(long = "from", value_name = "CONNSTR")]
    from: String,
    /// The capture directory to create.
    #[arg(short = 'o', long = "output", value_name = "DIR")]
    output: PathBuf,
    /// Stop this many seconds after the base backup (default: at ctrl-c).
    #[arg(long, value_name = "N")]
    seconds: Option<u64>,
}

/// Arguments of `replay-bench run`.
#[derive(Args, Debug)]
struct RunArgs {
    /// The capture directory (made by `replay-bench record`).
    capture: PathBuf,
    /// A config: `NAME:GUC=VALUE,...` for the standby; repeat to compare (the first is
    /// the baseline). Default: one config "default" with the backup's own settings.
    #[arg(long = "config", value_name = "NAME:GUC=VALUE,...")]
    configs: Vec<BenchConfig>,
    /// Runs per config (configs alternate: A B A B ...).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// `max` (all WAL at once), `original` (each commit at its original time) or `xN`
    /// (original, N times faster).
    #[arg(long, default_value = "max")]
    pace: Pace,
    /// Where to write samples.json, replay.png and replay.svg (default CAPTURE/results).
    #[arg(short = 'o', long = "output", value_name = "DIR")]
    output: Option<PathBuf>,
    /// The directory of the PostgreSQL 15 programs.
    #[arg(long = "pg-bin", value_name = "DIR", default_value = "/usr/lib/postgresql/15/bin")]
    pg_bin: PathBuf,
    /// What the standbys are: real PostgreSQL 15 (`pg`), or walstream node standbys
    /// (`node`, for a capture recorded from a node primary).
    #[arg(long, value_enum, default_value_t = TargetKind::Pg)]
    target: TargetKind,
    /// `CONFIG=CONNSTR`: that config's standbys stream from this server (a primary that
    /// still has the capture's WAL) instead of walstream's sender, to compare the two;
    /// `--pace max` only.
    #[arg(long = "source", value_name = "CONFIG=CONNSTR")]
    sources: Vec<String>,
    /// The longest one run may take, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    timeout: u64,
    /// SQL to run on each standby once it has replayed the capture (answers in the JSON).
    #[arg(long = "verify-sql", value_name = "SQL")]
    verify_sql: Vec<String>,
    #[command(flatten)]
    metrics: crate::metrics::MetricsArgs,
}

/// `--target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TargetKind {
    /// Real PostgreSQL 15.
    Pg,
    /// A walstream node standby.
    Node,
}

/// Runs `walstream replay-bench`.
pub fn main(args: ReplayBenchArgs) -> ExitCode {
    crate::cli::init_logging("warn");
    let cancel = CancellationToken::new();
    crate::cli::run("walstream replay-bench: error: ", crate::cli::Flavor::MultiThread, async {
        crate::cli::cancel_on_interrupt(cancel.clone());
        match args.command {
            BenchCommand::Record(a) => record_main(a, &cancel).await,
            BenchCommand::Run(a) => run_main(a, &cancel).await,
        }
    })
}

/// `--source CONFIG=CONNSTR`s, each naming a config, at `max` pace only.
fn parse_sources(
    given: &[String],
    configs: &[&str],
    pace: Pace,
) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for s in given {
        let Some((name, conninfo)) = s.split_once('=').map(|(n, c)| (n.trim(), c.trim())) else {
            bail!("invalid --source \"{s}\": expected CONFIG=CONNSTR");
        };
        if !configs.contains(&name) {
            bail!("--source names config \"{name}\", which no --config gives");
        }
        if out.insert(name.to_string(), conninfo.to_string()).is_some() {
            bail!("config \"{name}\" is given two sources");
        }
    }
    if !out.is_empty() && pace != Pace::Max {
        bail!("--source streams from a server, which cannot be paced: use --pace max");
    }
    Ok(out)
}

/// Checks that the server `conninfo` answers replication commands and is the capture's
/// system.
async fn check_source(config: &str, conninfo: &str, system_id: u64) -> Result<()> {
    let info = ConnInfo::parse(conninfo)?;
    let what = || format!("the source of config \"{config}\"");
    let mut conn =
        walstream_receiver::conn::ReplicationConn::connect(&info, ReplicationMode::Physical)
            .await
            .with_context(what)?;
    let ident = conn.simple_query("IDENTIFY_SYSTEM").await.with_context(what)?;
    conn.terminate().await;
    let id: Option<u64> = ident.get_text(0, 0).and_then(|s| s.parse().ok());
    if id != Some(system_id) {
        bail!(
            "{} is another system: its system identifier is {}, the capture's {system_id}",
            what(),
            id.map_or("unknown".to_string(), |i| i.to_string())
        );
    }
    Ok(())
}

async fn record_main(args: RecordArgs, cancel: &CancellationToken) -> Result<()> {
    let mut info = ConnInfo::parse(&args.from)?;
    if info.application_name.is_none() {
        info.application_name = Some("walstream replay-bench".into());
    }
    let m = record::record(&info, &args.output, args.seconds, cancel).await?;
    println!(
        "captured {} to {} on timeline {} ({} records, {} commits) in {}",
        m.start_lsn,
        m.end_lsn,
        m.timeline,
        m.total_records(),
        m.commits,
        args.output.display()
    );
    Ok(())
}

/// The samples file: the capture, every run with its samples, the per config summary.
#[derive(Debug, Serialize)]
struct BenchOutput<'a> {
    capture: &'a Path,
    start_lsn: String,
    end_lsn: String,
    bytes: u64,
    records: &'a BTreeMap<String, u64>,
    pace: String,
    configs: Vec<ConfigSummary>,
    runs: &'a [RunRecord],
}

async fn run_main(args: RunArgs, cancel: &CancellationToken) -> Result<()> {
    // Everything is checked before anything is made.
    let target = match args.target {
        TargetKind::Pg => Target::Pg(PgBin::new(&args.pg_bin)?),
        TargetKind::Node => Target::Node(std::env::current_exe()?),
    };
    let cap_dir = args.capture.clone();
    let cap = tokio::task::spawn_blocking(move || Capture::open(&cap_dir)).await??;
    let mut configs = args.configs.clone();
    if configs.is_empty() {
        configs.push(BenchConfig { name: "default".into(), settings: Vec::new() });
    }
    let mut names: Vec<&str> = configs.iter().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        bail!("config \"{}\" is given twice", w[0]);
    }
    let sources = parse_sources(&args.sources, &names, args.pace)?;
    for (name, conninfo) in &sources {
        check_source(name, conninfo, cap.manifest.system_id).await?;
    }
    let output = args.output.clone().unwrap_or_else(|| run::default_output(&args.capture));
    // One backend table for every run's sender, so /metrics shows the walsender serving
    // the capture whichever run is on.
    let registry = walstream_sender::registry::Registry::new();
    let backends = registry.clone();
    crate::metrics::start(&args.metrics, cancel.clone(), |m| m.add_backends(backends)).await?;
    let plan = RunPlan {
        registry,
        configs: configs.clone(),
        runs: args.runs as usize,
        pace: args.pace,
        target,
        sources,
        timeout: Duration::from_secs(args.timeout),
        verify_sql: args.verify_sql.clone(),
        progress: std::io::stderr().is_terminal(),
    };
    let runs = run::run_all(&cap, &plan, cancel).await?;
    let by_config: Vec<(String, Vec<report::RunSummary>)> = configs
        .iter()
        .map(|c| {
            let s = runs.iter().filter(|r| r.config == c.name).map(|r| r.summary.clone()).collect();
            (c.name.clone(), s)
        })
        .collect();
    let summary = report::compare(&by_config);
    print!("{}", report::table(&summary));
    std::fs::create_dir_all(&output)?;
    let out = BenchOutput {
        capture: &args.capture,
        start_lsn: cap.start.to_string(),
        end_lsn: cap.end.to_string(),
        bytes: cap.end.0.saturating_sub(cap.start.0),
        records: &cap.manifest.records,
        pace: args.pace.to_string(),
        configs: summary,
        runs: &runs,
    };
    sample::write_json(&output.join("samples.json"), &out)?;
    let lines: Vec<plot::PlotLine> = runs.iter().map(plot_line).collect();
    let title = format!("replay of {} ({} pace)", args.capture.display(), args.pace);
    plot::write_plots(&lines, &title, &output.join("replay.png"), &output.join("replay.svg"))?;
    println!("samples and plots in {}", output.display());
    Ok(())
}

fn plot_line(r: &RunRecord) -> plot::PlotLine {
    const MB: f64 = 1_048_576.0;
    let mut line =
        plot::PlotLine { label: format!("{} #{}", r.config, r.run), ..Default::default() };
    for s in &r.samples {
        if let Some(b) = s.replayed {
            line.replayed_mb.push((s.t, b as f64 / MB));
        }
        if let Some(b) = s.lag_bytes {
            line.lag_mb.push((s.t, b as f64 / MB));
        }
        if let Some(l) = s.lag_seconds {
            line.lag_seconds.push((s.t, l));
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_name_configs_at_max_pace() {
        let names = ["walstream", "primary"];
        let s = |v: &[&str], pace| {
            let v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
            parse_sources(&v, &names, pace).map_err(|e| e.to_string())
        };
        let got = s(&["primary=host=127.0.0.1 port=5 user=postgres"], Pace::Max).unwrap();
        assert_eq!(got["primary"], "host=127.0.0.1 port=5 user=postgres");
        assert!(s(&[], Pace::Scaled(1.0)).unwrap().is_empty());
        let e = s(&["other=host=x"], Pace::Max).unwrap_err();
        assert!(e.contains("no --config gives"), "{e}");
        let e = s(&["primary"], Pace::Max).unwrap_err();
        assert!(e.contains("expected CONFIG=CONNSTR"), "{e}");
        let e = s(&["primary=host=a", "primary=host=b"], Pace::Max).unwrap_err();
        assert!(e.contains("two sources"), "{e}");
        let e = s(&["primary=host=a"], Pace::Scaled(2.0)).unwrap_err();
        assert!(e.contains("use --pace max"), "{e}");
    }
}
