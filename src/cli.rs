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
            eprintln!("{prefix}{}", error_text(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes as one line, in PostgreSQL's manner: a cause already in the
/// text before it is not repeated (an I/O error's message names its OS error, and the
/// chain would name it again), and OS errors read as `strerror` does, without Rust's
/// ` (os error N)`.
pub fn error_text(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    strip_os_error_numbers(&out)
}

/// `Permission denied (os error 13)` → `Permission denied`.
fn strip_os_error_numbers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(" (os error ") {
        let after = &rest[at + " (os error ".len()..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && after[digits..].starts_with(')') {
            out.push_str(&rest[..at]);
            rest = &after[digits + 1..];
        } else {
            out.push_str(&rest[..at + 1]);
            rest = &rest[at + 1..];
        }
    }
    out.push_str(rest);
    out
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

#[cfg(test)]
mod error_text_tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("could not open \"{path}\": {source}")]
    struct Open {
        path: String,
        source: std::io::Error,
    }

    #[test]
    fn an_os_error_is_named_once_and_as_strerror_does() {
        let io = std::io::Error::from_raw_os_error(13);
        let e = anyhow::Error::new(Open { path: "x".into(), source: io });
        assert_eq!(error_text(&e), "could not open \"x\": Permission denied");
        let e = anyhow::anyhow!("plain").context("outer");
        assert_eq!(error_text(&e), "outer: plain");
        assert_eq!(strip_os_error_numbers("a (os error x) b"), "a (os error x) b");
    }
}
