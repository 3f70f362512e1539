//! What every command's `main` sets up, in one place: logging to stderr, the tokio
//! runtime that runs the command, and the signals that end it.

use std::future::Future;
use std::process::ExitCode;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use walstream_sender::postmaster::ShutdownMode;

/// Which tokio runtime a command runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// All cores: servers with many connections.
    MultiThread,
    /// One thread: a single task whose latency is best without hand-offs across threads.
    CurrentThread,
}

/// How log lines are written (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// PostgreSQL-style lines, `... UTC [pid] LOG:  message` (the default).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The format `main` chose, read by [`init_logging`].
static LOG_FORMAT: std::sync::OnceLock<LogFormat> = std::sync::OnceLock::new();

/// Sets the log format for [`init_logging`]; only the first call counts.
pub fn set_log_format(format: LogFormat) {
    let _ = LOG_FORMAT.set(format);
}

/// Logs to stderr at `default` level, or as `WALSTREAM_LOG` (first) or `RUST_LOG` say;
/// in the format [`set_log_format`] chose; colours on a terminal (text only).
pub fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WALSTREAM_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match LOG_FORMAT.get().copied().unwrap_or_default() {
        // PostgreSQL's own log lines: `2026-12-07 10:26:35.131 UTC [pid] LOG:  ...`.
        LogFormat::Text => builder.with_ansi(false).event_format(crate::logfmt::PgStyle).try_init(),
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
}

/// Runs `command` to completion on a fresh runtime of `flavor`. A failure is printed to
/// stderr after `prefix` (e.g. `walstream serve: `) and gives exit code 1.
pub fn run<F>(prefix: &str, flavor: Flavor, command: F) -> ExitCode
where
    F: Future<Output = anyhow::Result<()>>,
{
    let mut builder = match flavor {
        Flavor::MultiThread => tokio::runtime::Builder::new_multi_thread(),
        Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{prefix}could not start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{prefix}{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A server's signals, as the postmaster takes them: SIGTERM smart shutdown, SIGINT fast,
/// SIGQUIT immediate. Each is sent on `tx` (a later, harder one wins); runs until dropped.
pub async fn forward_signals(tx: watch::Sender<Option<ShutdownMode>>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut quit)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::quit()),
    ) else {
        tracing::warn!("could not install signal handlers");
        return;
    };
    loop {
        let mode = tokio::select! {
            _ = term.recv() => ShutdownMode::Smart,
            _ = int.recv() => ShutdownMode::Fast,
            _ = quit.recv() => ShutdownMode::Immediate,
        };
        tx.send_modify(|m| *m = Some(m.map_or(mode, |old| old.max(mode))));
    }
}

/// A client's signal: SIGINT (Ctrl-C) cancels `cancel`, so the command stops cleanly.
pub fn cancel_on_interrupt(cancel: CancellationToken) {
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            cancel.cancel();
        }
    });
}
