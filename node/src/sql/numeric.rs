//! Exact decimal arithmetic for `numeric` values (held as text by the engine), enough for
//! literals like `1.5`, `sum`/`avg` of integers and `+ - * /` with PostgreSQL's scales.

use walstream_protocol::wire::sqlstate;

use super::error::{err, SqlResult};

/// A decimal: `m × 10^-scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dec {
    /// The digits.
    pub m: i128,
    /// Digits after the point.
    pub scale: u32,
}

fn overflow() -> super::error::SqlError {
    err(sqlstate::NUMERIC_VALUE_OUT_OF_RANGE, "value overflows numeric format")
}

fn pow10(n: u32) -> SqlResult<i128> {
    10i128.checked_pow(n).ok_or_else(overflow)
}

impl Dec {
    /// An integer.
    pub fn int(v: i128) -> Dec {
        Dec { m: v, scale: 0 }
    }

    /// Parses `[-+]digits[.digits]` (`e` exponents are not taken).
    pub fn parse(s: &str) -> Option<Dec> {
        let t = s.trim();
        let (neg, t) = match t.as_bytes().first() {
            Some(b'-') => (true, &t[1..]),
            Some(b'+') => (false, &t[1..]),
            _ => (false, t),
        };
        let (int, frac) = t.split_once('.').unwrap_or((t, ""));
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) || frac.len() > 30 {
            return None;
        }
        let mut m: i128 = 0;
        for b in int.bytes().chain(frac.bytes()) {
            m = m.checked_mul(10)?.checked_add(i128::from(b - b'0'))?;
        }
        Some(Dec { m: if neg { -m } else { m }, scale: frac.len() as u32 })
    }

    /// As text, with `scale` digits after the point.
    pub fn to_text(self) -> String {
        let neg = self.m < 0;
        let digits = self.m.unsigned_abs().to_string();
        let s = self.scale as usize;
        let body = if s == 0 {
            digits
        } else if digits.len() > s {
            format!("{}.{}", &digits[..digits.len() - s], &digits[digits.len() - s..])
        } else {
            format!("0.{}{}", "0".repeat(s - digits.len()), digits)
        };
        if neg {
            format!("-{body}")
        } else {
            body
        }
    }

    fn rescale(self, scale: u32) -> SqlResult<Dec> {
        if scale >= self.scale {
            let m = self.m.checked_mul(pow10(scale - self.scale)?).ok_or_else(overflow)?;
            return Ok(Dec { m, scale });
        }
        let d = pow10(self.scale - scale)?;
        let (q, r) = (self.m / d, self.m % d);
        // round half away from zero, as numeric does
        let q = if r.abs() * 2 >= d { q + self.m.signum() } else { q };
        Ok(Dec { m: q, scale })
    }

    /// `a + b`.
    pub fn checked_add(self, o: Dec) -> SqlResult<Dec> {
        let s = self.scale.max(o.scale);
        let (a, b) = (self.rescale(s)?, o.rescale(s)?);
        Ok(Dec { m: a.m.checked_add(b.m).ok_or_else(overflow)?, scale: s })
    }

    /// `a - b`.
    pub fn checked_sub(self, o: Dec) -> SqlResult<Dec> {
        self.checked_add(Dec { m: o.m.checked_neg().ok_or_else(overflow)?, scale: o.scale })
    }

    /// `a * b`.
    pub fn checked_mul(self, o: Dec) -> SqlResult<Dec> {
        Ok(Dec { m: self.m.checked_mul(o.m).ok_or_else(overflow)?, scale: self.scale + o.scale })
    }

    /// numeric.c: `a / b` with select_div_scale's result scale.
    pub fn checked_div(self, o: Dec) -> SqlResult<Dec> {
        if o.m == 0 {
            return Err(err("22012", "division by zero"));
        }
        let rscale = select_div_scale(self, o);
        // q = a.m * 10^(rscale + o.scale - a.scale) / o.m, rounded
        let shift = i64::from(rscale) + i64::from(o.scale) - i64::from(self.scale);
        let (num, den) = if shift >= 0 {
            (self.m.checked_mul(pow10(shift as u32)?).ok_or_else(overflow)?, o.m)
        } else {
            (self.m, o.m.checked_mul(pow10((-shift) as u32)?).ok_or_else(overflow)?)
        };
        let (q, r) = (num / den, num % den);
        let q = if r.abs() * 2 >= den.abs() { q + (num.signum() * den.signum()) } else { q };
        Ok(Dec { m: q, scale: rscale })
    }

    /// `a % b` (truncated, the sign of `a`), at the larger scale.
    pub fn checked_rem(self, o: Dec) -> SqlResult<Dec> {
        if o.m == 0 {
            return Err(err("22012", "division by zero"));
        }
        let s = self.scale.max(o.scale);
        let (a, b) = (self.rescale(s)?, o.rescale(s)?);
        Ok(Dec { m: a.m % b.m, scale: s })
    }

    /// As a float.
    pub fn to_f64(self) -> f64 {
        self.m as f64 / 10f64.powi(self.scale as i32)
    }
}

/// The weight (in base-10000 digits) and first base-10000 digit of `d`.
fn weight(d: Dec) -> (i64, i128) {
    if d.m == 0 {
        return (0, 0);
    }
    let abs = d.m.unsigned_abs();
    let digits = abs.to_string();
    // position of the decimal point relative to the digit string
    let int_digits = digits.len() as i64 - i64::from(d.scale);
    // weight w: value in [10000^w, 10000^(w+1))
    let w = (int_digits - 1).div_euclid(4);
    // first base-10000 digit: the group of decimal digits at weight w
    let lead = (int_digits - 1).rem_euclid(4) + 1; // decimal digits in the first group
    let take = lead.max(0) as usize;
    let first: String = if int_digits > 0 {
        digits.chars().take(take).collect()
    } else {
        // fractional: digits after leading zeros fill the group
        let zeros = (-int_digits) as usize;
        let padded = format!("{}{}", "0".repeat(zeros), digits);
        let group: String = padded.chars().skip(((-w - 1) * 4) as usize).take(4).collect();
        format!("{group:0<4}")
    };
    let first = first.parse::<i128>().unwrap_or(0);
    (w, first)
}

/// numeric.c: select_div_scale.
fn select_div_scale(a: Dec, b: Dec) -> u32 {
    let (w1, f1) = weight(a);
    let (w2, f2) = weight(b);
    let mut qweight = w1 - w2;
    if f1 <= f2 {
        qweight -= 1;
    }
    let rscale = 16 - qweight * 4;
    rscale.max(i64::from(a.scale)).max(i64::from(b.scale)).clamp(0, 1000) as u32
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn text_round_trips(m in -10i128.pow(30)..10i128.pow(30), scale in 0u32..20) {
            let d = Dec { m, scale };
            prop_assert_eq!(Dec::parse(&d.to_text()), Some(d));
        }

        #[test]
        fn parse_never_panics(s in "[-+0-9.e]{0,40}") {
            let _ = Dec::parse(&s);
        }

        #[test]
        fn arithmetic_never_panics(a in any::<i64>(), b in any::<i64>(), sa in 0u32..40, sb in 0u32..40) {
            let (x, y) = (Dec { m: i128::from(a), scale: sa }, Dec { m: i128::from(b), scale: sb });
            let _ = x.checked_add(y);
            let _ = x.checked_sub(y);
            let _ = x.checked_mul(y);
            let _ = x.checked_div(y);
            let _ = x.checked_rem(y);
        }
    }

    #[test]
    fn division_scales_as_postgresql() {
        let q = |a: i128, b: i128| Dec::int(a).checked_div(Dec::int(b)).unwrap().to_text();
        assert_eq!(q(6, 3), "2.0000000000000000");
        assert_eq!(q(3, 2), "1.5000000000000000");
        assert_eq!(q(1, 2), "0.50000000000000000000");
        assert_eq!(q(0, 2), "0.00000000000000000000");
        assert_eq!(q(2, 3), "0.66666666666666666667");
        assert_eq!(q(100_000, 3), "33333.333333333333");
    }

    #[test]
    fn parse_and_arithmetic() {
        let a = Dec::parse("1.5").unwrap();
        assert_eq!(a.checked_add(Dec::int(1)).unwrap().to_text(), "2.5");
        assert_eq!(a.checked_mul(Dec::parse("2.00").unwrap()).unwrap().to_text(), "3.000");
        assert_eq!(Dec::parse("-0.05").unwrap().to_text(), "-0.05");
        assert!(Dec::parse("1e5").is_none());
        let r = |a: &str, b: &str| {
            Dec::parse(a).unwrap().checked_rem(Dec::parse(b).unwrap()).unwrap().to_text()
        };
        assert_eq!(r("7.5", "2"), "1.5");
        assert_eq!(r("-7.5", "2"), "-1.5");
        assert_eq!(r("10.25", "3.1"), "0.95");
    }
}
