//! Times the admin API and CLI accept for `until`: UNIX seconds (`1767225600`), a UTC date and
//! time in RFC 3339 (`2026-12-31T23:59:59Z`, or a date alone, `2026-12-31`, meaning its
//! midnight UTC), or a duration from now (`90s`, `30m`, `12h`, `7d`). Pure: `now` is passed in.

/// Parses `text` into UNIX seconds; the error says what is accepted.
pub fn parse_until(text: &str, now: u64) -> Result<u64, String> {
    let t = text.trim();
    let bad = || {
        format!(
            "`{t}` is not a time: give UNIX seconds, an RFC 3339 UTC time such as 2026-12-31T23:59:59Z, a date such as 2026-12-31, or a duration such as 30m, 12h or 7d"
        )
    };
    if t.is_empty() {
        return Err(bad());
    }
    if t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse().map_err(|_| bad());
    }
    if let Some(unit) = t.chars().last().filter(|c| "smhd".contains(*c)) {
        let digits = &t[..t.len() - 1];
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            let n: u64 = digits.parse().map_err(|_| bad())?;
            let scale = match unit {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                _ => 86_400,
            };
            return n
                .checked_mul(scale)
                .and_then(|d| now.checked_add(d))
                .ok_or_else(bad);
        }
    }
    parse_rfc3339(t).ok_or_else(bad)
}

/// `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM:SS[.frac](Z|+00:00)`, UTC only.
fn parse_rfc3339(t: &str) -> Option<u64> {
    let (date, time) = match t.split_once(['T', 't', ' ']) {
        Some((d, rest)) => (d, Some(rest)),
        None => (t, None),
    };
    let mut d = date.split('-');
    let year: i64 = d.next()?.parse().ok()?;
    let month: u32 = d.next()?.parse().ok()?;
    let day: u32 = d.next()?.parse().ok()?;
    if d.next().is_some() || !(1970..=9999).contains(&year) || !(1..=12).contains(&month) {
        return None;
    }
    if day == 0 || day > days_in_month(year, month) {
        return None;
    }
    let mut secs = 0;
    if let Some(time) = time {
        let clock = time
            .strip_suffix(['Z', 'z'])
            .or_else(|| time.strip_suffix("+00:00"))?;
        let clock = clock.split('.').next()?;
        let mut c = clock.split(':');
        let h: u64 = c.next()?.parse().ok()?;
        let m: u64 = c.next()?.parse().ok()?;
        let s: u64 = c.next()?.parse().ok()?;
        if c.next().is_some() || h > 23 || m > 59 || s > 60 {
            return None;
        }
        secs = h * 3600 + m * 60 + s;
    }
    let days = days_from_civil(year, month, day);
    u64::try_from(days)
        .ok()?
        .checked_mul(86_400)?
        .checked_add(secs)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// UNIX seconds → `YYYY-MM-DDTHH:MM:SSZ` (for tables).
pub fn format_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_accepted_form() {
        assert_eq!(parse_until("1767225600", 0), Ok(1_767_225_600));
        assert_eq!(parse_until("2026-01-01T00:00:00Z", 0), Ok(1_767_225_600));
        assert_eq!(parse_until("2026-01-01", 0), Ok(1_767_225_600));
        assert_eq!(
            parse_until("2024-02-29T12:30:15.5+00:00", 0),
            Ok(1_709_209_815)
        );
        assert_eq!(parse_until("30m", 100), Ok(1900));
        assert_eq!(parse_until("7d", 0), Ok(604_800));
        assert_eq!(format_utc(1_709_209_815), "2024-02-29T12:30:15Z");
    }

    #[test]
    fn malformed_times_are_refused() {
        for bad in [
            "",
            "soon",
            "2026-13-01",
            "2025-02-29",
            "2026-01-01T25:00:00Z",
            "2026-01-01T10:00:00+02:00",
            "-5m",
            "m",
            "99999999999999999999",
        ] {
            assert!(parse_until(bad, 0).is_err(), "{bad}");
        }
    }
}
