//! The text log format: PostgreSQL's (`log_line_prefix = '%m [%p] '`), so a log reads as
//! a postmaster's does:
//!
//! ```text
//! 2026-12-07 10:26:35.131 UTC [4711] LOG:  parameter "statement_timeout" changed to "5s"
//! 2026-12-07 10:26:35.402 UTC [4711] FATAL:  terminating connection due to administrator command  pid=10004
//! ```
//!
//! tracing's levels map to PostgreSQL's severities (ERROR, WARNING, LOG, DEBUG1, DEBUG2);
//! a message that already names its severity (`FATAL:  ...`, as the backends log why a
//! connection ended) keeps it. The event's other fields follow as `name=value`.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// PostgreSQL's severity for a tracing level.
pub fn severity(level: Level) -> &'static str {
    match level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "LOG",
        Level::DEBUG => "DEBUG1",
        Level::TRACE => "DEBUG2",
    }
}

/// The severities a message may start with itself.
const NAMED: &[&str] = &["FATAL:  ", "PANIC:  ", "ERROR:  ", "WARNING:  ", "LOG:  "];

/// One line: `when [pid] SEVERITY:  message  fields`.
pub fn line(when: &str, pid: u32, level: Level, message: &str, fields: &str) -> String {
    let mut out = format!("{when} [{pid}] ");
    if NAMED.iter().any(|p| message.starts_with(p)) {
        out.push_str(message);
    } else {
        let _ = write!(out, "{}:  {message}", severity(level));
    }
    if !fields.is_empty() {
        let _ = write!(out, "  {fields}");
    }
    out
}

/// Collects an event's message and its other fields.
#[derive(Default)]
struct Collect {
    message: String,
    fields: String,
}

impl Visit for Collect {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            if !self.fields.is_empty() {
                self.fields.push(' ');
            }
            let _ = write!(self.fields, "{}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.record_debug(field, &value);
        }
    }
}

/// The [`FormatEvent`] of the text format.
pub struct PgStyle;

impl<S, N> FormatEvent<S, N> for PgStyle
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut c = Collect::default();
        event.record(&mut c);
        let when = jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M:%S%.3f UTC").to_string();
        let level = *event.metadata().level();
        writeln!(writer, "{}", line(&when, std::process::id(), level, &c.message, &c.fields))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_as_postgresql_writes_them() {
        let when = "2026-12-07 10:26:35.131 UTC";
        assert_eq!(
            line(when, 42, Level::INFO, "database system is ready to accept connections", ""),
            "2026-12-07 10:26:35.131 UTC [42] LOG:  database system is ready to accept connections"
        );
        assert_eq!(
            line(when, 42, Level::INFO, "FATAL:  password authentication failed", "pid=10001"),
            "2026-12-07 10:26:35.131 UTC [42] FATAL:  password authentication failed  pid=10001"
        );
        assert_eq!(
            line(when, 7, Level::WARN, "w", ""),
            "2026-12-07 10:26:35.131 UTC [7] WARNING:  w"
        );
        assert_eq!(severity(Level::DEBUG), "DEBUG1");
    }
}
