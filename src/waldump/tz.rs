//! Timestamps in the local time zone, as pg_waldump's `timestamptz_to_str`
//! (`pg_waldump/compat.c`) prints them with `localtime` and `strftime`.

use jiff::tz::TimeZone;
use walstream_protocol::wal::desc::{split_timestamptz, TimestampFormat, Utc};

/// The process's time zone (`TZ`, else `/etc/localtime`, else UTC).
pub struct LocalTime {
    tz: TimeZone,
}

impl Default for LocalTime {
    fn default() -> Self {
        LocalTime { tz: TimeZone::try_system().unwrap_or(TimeZone::UTC) }
    }
}

impl TimestampFormat for LocalTime {
    fn write_timestamptz(&self, out: &mut Vec<u8>, ts: i64) {
        use std::io::Write as _;
        let (secs, micros) = split_timestamptz(ts);
        let Ok(t) = jiff::Timestamp::from_second(secs) else {
            return Utc.write_timestamptz(out, ts);
        };
        let dt = self.tz.to_datetime(t);
        let info = self.tz.to_offset_info(t);
        let _ = write!(
            out,
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{micros:06} {}",
            dt.year(),
            dt.month(),
            dt.day(),
            dt.hour(),
            dt.minute(),
            dt.second(),
            info.abbreviation()
        );
    }
}
