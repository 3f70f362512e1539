//! `timestamptz` text input and output in PostgreSQL's ISO style with TimeZone UTC.

use std::time::{SystemTime, UNIX_EPOCH};

use super::error::EngineError;

/// Microseconds from 1970-01-01 to 2000-01-01 (PostgreSQL's epoch).
const PG_EPOCH_OFFSET_US: i64 = 946_684_800_000_000;
const US_PER_DAY: i64 = 86_400_000_000;

/// `now` as microseconds since 2000-01-01 UTC (timestamp.c: GetCurrentTimestamp).
pub fn timestamp_from_system(now: SystemTime) -> i64 {
    match now.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_micros() as i64 - PG_EPOCH_OFFSET_US,
        Err(e) => -(e.duration().as_micros() as i64) - PG_EPOCH_OFFSET_US,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// timestamp.c: timestamptz_out with DateStyle ISO and TimeZone UTC (one implementation,
/// the protocol's).
pub use walstream_protocol::text::timestamptz_out;

fn invalid(s: &str) -> EngineError {
    EngineError::InvalidDatetime { input: s.to_string() }
}

/// Reads `n` digits at the start of `s`.
fn digits(s: &str, n: usize) -> Option<(i64, &str)> {
    let head = s.get(..n)?;
    if !head.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((head.parse().ok()?, &s[n..]))
}

/// timestamp.c: timestamptz_in for ISO 8601 forms: `YYYY-MM-DD[( |T)HH:MM[:SS[.ffffff]]]`
/// with an optional `Z`, `+HH`, `+HH:MM` or `+HHMM` zone, and optional ` BC`.
///
/// # Errors
/// 22007 for anything else, 22008 for fields out of range.
pub fn timestamptz_in(s: &str) -> Result<i64, EngineError> {
    let t = s.trim();
    let (t, bc) = match t.strip_suffix(" BC") {
        Some(r) => (r, true),
        None => (t, false),
    };
    let year_len = t.find('-').ok_or_else(|| invalid(s))?;
    let (y, r) = digits(t, year_len).filter(|_| year_len >= 4).ok_or_else(|| invalid(s))?;
    let (mo, r) = r.strip_prefix('-').and_then(|r| digits(r, 2)).ok_or_else(|| invalid(s))?;
    let (d, mut r) = r.strip_prefix('-').and_then(|r| digits(r, 2)).ok_or_else(|| invalid(s))?;
    let mut us = 0i64;
    if let Some(rest) = r.strip_prefix([' ', 'T']) {
        let (h, rest) = digits(rest, 2).ok_or_else(|| invalid(s))?;
        let (mi, mut rest) =
            rest.strip_prefix(':').and_then(|x| digits(x, 2)).ok_or_else(|| invalid(s))?;
        let mut sec = 0;
        if let Some((sv, x)) = rest.strip_prefix(':').and_then(|x| digits(x, 2)) {
            sec = sv;
            rest = x;
            if let Some(x) = rest.strip_prefix('.') {
                let n = x.bytes().take_while(u8::is_ascii_digit).count();
                let frac = format!("{:0<6}", &x[..n.min(6)]);
                us += frac.parse::<i64>().map_err(|_| invalid(s))?;
                rest = &x[n..];
            }
        }
        if h > 24 || mi > 59 || sec > 60 {
            return Err(EngineError::DatetimeOutOfRange { input: s.to_string() });
        }
        us += ((h * 60 + mi) * 60 + sec) * 1_000_000;
        r = rest;
    }
    us -= zone_offset(r.trim_start()).ok_or_else(|| invalid(s))? * 1_000_000;
    let y = if bc { 1 - y } else { y };
    let dim = [31, if leap(y) { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&mo) || d < 1 || d > dim[(mo - 1) as usize] {
        return Err(EngineError::DatetimeOutOfRange { input: s.to_string() });
    }
    Ok((days_from_civil(y, mo, d) * US_PER_DAY + us) - PG_EPOCH_OFFSET_US)
}

fn leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// The zone's offset east of UTC in seconds.
fn zone_offset(z: &str) -> Option<i64> {
    if z.is_empty() || z.eq_ignore_ascii_case("z") || z.eq_ignore_ascii_case("utc") {
        return Some(0);
    }
    let sign = match z.as_bytes()[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let z = &z[1..];
    let (h, r) = digits(z, 2).or_else(|| digits(z, 1))?;
    let m = match r.strip_prefix(':').unwrap_or(r) {
        "" => 0,
        x => digits(x, 2).filter(|(_, rest)| rest.is_empty())?.0,
    };
    Some(sign * (h * 3600 + m * 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_output_trims_fraction() {
        let t = timestamptz_in("2026-12-03 21:15:08.123456+00").unwrap();
        assert_eq!(timestamptz_out(t), "2026-12-03 21:15:08.123456+00");
        assert_eq!(timestamptz_out(0), "2000-01-01 00:00:00+00");
        let t = timestamptz_in("2000-01-01 02:00:00.5+02").unwrap();
        assert_eq!(timestamptz_out(t), "2000-01-01 00:00:00.5+00");
    }

    #[test]
    fn bad_dates_are_errors() {
        assert!(timestamptz_in("abc").is_err());
        assert!(timestamptz_in("2026-02-30").is_err());
    }
}
