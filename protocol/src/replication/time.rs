//! `TimestampTz`: PostgreSQL's timestamps, microseconds since 2000-01-01 00:00 UTC, as the
//! replication messages carry them. Conversions take the time as an argument.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds from the Unix epoch to PostgreSQL's (2000-01-01 UTC):
/// `(POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY`.
pub const POSTGRES_EPOCH_UNIX_SECS: u64 = 946_684_800;

const USECS_PER_SEC: i128 = 1_000_000;
const EPOCH_USECS: i128 = POSTGRES_EPOCH_UNIX_SECS as i128 * USECS_PER_SEC;

/// A PostgreSQL `TimestampTz`: microseconds since 2000-01-01 00:00:00 UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TimestampTz(pub i64);

impl TimestampTz {
    /// 2000-01-01 00:00:00 UTC.
    pub const POSTGRES_EPOCH: TimestampTz = TimestampTz(0);

    /// The timestamp of `t`, truncated to the microsecond and clamped to `i64`
    /// (`timestamp.c: GetCurrentTimestamp` does the same arithmetic on `gettimeofday`).
    pub fn from_system_time(t: SystemTime) -> TimestampTz {
        let unix_usecs = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_micros() as i128,
            Err(before) => -(before.duration().as_micros() as i128),
        };
        let pg = unix_usecs - EPOCH_USECS;
        TimestampTz(pg.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
    }

    /// The `SystemTime` of this timestamp, or `None` if the platform cannot hold it.
    pub fn to_system_time(self) -> Option<SystemTime> {
        let unix_usecs = i128::from(self.0) + EPOCH_USECS;
        let magnitude = u64::try_from(unix_usecs.unsigned_abs()).ok()?;
        let d = Duration::from_micros(magnitude);
        if unix_usecs >= 0 {
            UNIX_EPOCH.checked_add(d)
        } else {
            UNIX_EPOCH.checked_sub(d)
        }
    }

    /// Microseconds from `earlier` to `self` (negative when `earlier` is later), saturating.
    pub fn micros_since(self, earlier: TimestampTz) -> i64 {
        self.0.saturating_sub(earlier.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn epoch_and_capture_values() {
        let epoch = UNIX_EPOCH + Duration::from_secs(POSTGRES_EPOCH_UNIX_SECS);
        assert_eq!(TimestampTz::from_system_time(epoch), TimestampTz(0));
        assert_eq!(TimestampTz(0).to_system_time(), Some(epoch));
        assert_eq!(TimestampTz::from_system_time(UNIX_EPOCH), TimestampTz(-946_684_800_000_000));
        // proxy_recvwal.log: sendTime=2026-11-21T11:12:25.332641+00:00 raw=...0303c63442cba1
        let t = UNIX_EPOCH + Duration::from_micros(1_795_259_545_332_641);
        assert_eq!(TimestampTz::from_system_time(t), TimestampTz(0x0003_03c6_3442_cba1));
        let before_1970 = UNIX_EPOCH - Duration::from_micros(1);
        let ts = TimestampTz::from_system_time(before_1970);
        assert_eq!(ts.to_system_time(), Some(before_1970));
        assert_eq!(TimestampTz(5).micros_since(TimestampTz(7)), -2);
    }

    proptest! {
        #[test]
        fn round_trips(us in -(1i64 << 52)..(1i64 << 52)) {
            let t = TimestampTz(us).to_system_time().unwrap();
            prop_assert_eq!(TimestampTz::from_system_time(t), TimestampTz(us));
        }
    }
}
