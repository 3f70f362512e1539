//! PostgreSQL 15's text and binary output of the types walstream sends: `float8`
//! (`float.c: float8out` with the default `extra_float_digits = 1`: shortest exact),
//! `timestamptz` (`timestamp.c: timestamptz_out`, DateStyle ISO, TimeZone UTC) and
//! `numeric` (`numeric.c: numeric_send` from the text form).

/// Microseconds from 1970-01-01 to 2000-01-01 (PostgreSQL's epoch).
const PG_EPOCH_OFFSET_US: i64 = 946_684_800_000_000;
const US_PER_DAY: i64 = 86_400_000_000;

/// `float8out`: the shortest text that reads back exactly; scientific notation (`1e+20`,
/// `1.5e-05`) below 1e-4 and from 1e15 on; `NaN`, `Infinity`, `-Infinity`, `-0`.
pub fn float8_out(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    let sci = format!("{v:e}");
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..15).contains(&exp) {
        return format!("{v}");
    }
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mant}e{sign}{:02}", exp.abs())
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (H. Hinnant's algorithm).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, m, d)
}

/// `timestamptz_out` with DateStyle ISO and TimeZone UTC, for microseconds since
/// 2000-01-01 00:00:00 UTC: `2026-12-03 21:15:08.123456+00`, trailing zeros of the
/// fraction dropped, ` BC` for years before 1.
pub fn timestamptz_out(t: i64) -> String {
    if t == i64::MAX {
        return "infinity".into();
    }
    if t == i64::MIN {
        return "-infinity".into();
    }
    let unix = t.saturating_add(PG_EPOCH_OFFSET_US);
    let days = unix.div_euclid(US_PER_DAY);
    let us = unix.rem_euclid(US_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    let (secs, frac) = (us / 1_000_000, us % 1_000_000);
    let (year, bc) = if y <= 0 { (1 - y, " BC") } else { (y, "") };
    let mut s = format!(
        "{year:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    if frac != 0 {
        let f = format!("{frac:06}");
        s.push('.');
        s.push_str(f.trim_end_matches('0'));
    }
    s.push_str("+00");
    s.push_str(bc);
    s
}

/// `numeric_send` for a numeric in its text form (`-12.3400`, `NaN`): ndigits, weight,
/// sign, dscale, then base-10000 digits, all big-endian; `None` if `text` is not a
/// plain decimal.
pub fn numeric_send(text: &str) -> Option<Vec<u8>> {
    const NUMERIC_POS: u16 = 0x0000;
    const NUMERIC_NEG: u16 = 0x4000;
    const NUMERIC_NAN: u16 = 0xC000;
    let t = text.trim();
    // numeric_send reads the special values' dscale from their header's short-format dscale
    // bits, so both infinities carry 0x20 there (checked on 15: `numeric_send('Infinity')`
    // is 00000000d0000020).
    let special = |sign: u16, dscale: u16| {
        Some([0u16, 0, sign, dscale].iter().flat_map(|v| v.to_be_bytes()).collect())
    };
    match t {
        "NaN" => return special(NUMERIC_NAN, 0),
        "Infinity" => return special(0xD000, 0x20),
        "-Infinity" => return special(0xF000, 0x20),
        _ => {}
    }
    let (sign, body) = match t.strip_prefix('-') {
        Some(rest) => (NUMERIC_NEG, rest),
        None => (NUMERIC_POS, t.strip_prefix('+').unwrap_or(t)),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let dscale = u16::try_from(frac.len()).ok()?;
    // Pad the integer part on the left and the fraction on the right to groups of four.
    let int = int.trim_start_matches('0');
    let lead = (4 - int.len() % 4) % 4;
    let tail = (4 - frac.len() % 4) % 4;
    let digits: String = "0".repeat(lead) + int + frac + &"0".repeat(tail);
    let int_groups = (lead + int.len()) / 4;
    let mut groups: Vec<u16> = digits
        .as_bytes()
        .chunks(4)
        .map(|c| c.iter().fold(0u16, |a, d| a * 10 + u16::from(d - b'0')))
        .collect();
    let mut weight = int_groups as i32 - 1;
    // Strip leading and trailing zero groups (numeric.c: make_result).
    let first = groups.iter().position(|&g| g != 0);
    let Some(first) = first else {
        return Some(
            [0u16, 0, sign & !NUMERIC_NEG, dscale].iter().flat_map(|v| v.to_be_bytes()).collect(),
        );
    };
    weight -= first as i32;
    groups.drain(..first);
    while groups.last() == Some(&0) {
        groups.pop();
    }
    let mut out = Vec::with_capacity(8 + groups.len() * 2);
    out.extend_from_slice(&u16::try_from(groups.len()).ok()?.to_be_bytes());
    out.extend_from_slice(&i16::try_from(weight).ok()?.to_be_bytes());
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&dscale.to_be_bytes());
    for g in groups {
        out.extend_from_slice(&g.to_be_bytes());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float8_output_matches_postgresql() {
        assert_eq!(float8_out(1e20), "1e+20");
        assert_eq!(float8_out(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(float8_out(1.5e-5), "1.5e-05");
        assert_eq!(float8_out(123456789012345.0), "123456789012345");
        assert_eq!(float8_out(1234567890123456.0), "1.234567890123456e+15");
        assert_eq!(float8_out(0.0001), "0.0001");
        assert_eq!(float8_out(-0.0), "-0");
        assert_eq!(float8_out(f64::NEG_INFINITY), "-Infinity");
    }

    #[test]
    fn timestamptz_output_matches_postgresql() {
        assert_eq!(timestamptz_out(0), "2000-01-01 00:00:00+00");
        // Values and texts from a live PostgreSQL 15.18 (SET timezone = UTC).
        assert_eq!(timestamptz_out(848_574_745_315_400), "2026-11-21 11:12:25.3154+00");
        let bc = (-63_517_780_800 - 946_684_800) * 1_000_000;
        assert_eq!(timestamptz_out(bc), "0044-03-15 12:00:00+00 BC");
        assert_eq!(timestamptz_out(-1), "1999-12-31 23:59:59.999999+00");
        assert_eq!(timestamptz_out(i64::MAX), "infinity");
    }

    #[test]
    fn numeric_send_matches_postgresql() {
        // encode(numeric_send(x::numeric), 'hex') on a live PostgreSQL 15.18.
        let cases = [
            ("0", "0000000000000000"),
            ("1", "00010000000000000001"),
            ("-12.3400", "0002000040000004000c0d48"),
            ("10000", "00010001000000000001"),
            ("0.0001", "0001ffff000000040001"),
            ("NaN", "00000000c0000000"),
            ("Infinity", "00000000d0000020"),
            ("-Infinity", "00000000f0000020"),
            ("123456789.123", "0004000200000003000109291a8504ce"),
            ("0.000", "0000000000000003"),
            ("-0.5", "0001ffff400000011388"),
            ("99999999", "0002000100000000270f270f"),
        ];
        for (text, want) in cases {
            let got: String =
                numeric_send(text).unwrap().iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(got, want, "{text}");
        }
        assert!(numeric_send("1e5").is_none());
        assert!(numeric_send("-").is_none());
    }
}
