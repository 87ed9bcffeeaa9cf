//! Calendar arithmetic for the timestamps the Handle REST API writes (`2026-11-24T08:34:46Z`)
//! and the MRV periods (`2025`, `2025-03`). Pure functions: no clock here, callers pass time in.

/// Why a timestamp or period was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TimeError {
    #[error("{0:?} is not an RFC 3339 / ISO 8601 instant (expected like 2025-03-01T08:00:00Z)")]
    Instant(String),
    #[error("{0:?} is not a period (expected YYYY, YYYY-MM or YYYY-MM-DD) nor an instant")]
    Period(String),
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number (inverse of [`days_from_civil`]).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` in UTC, the reference's `ISO8601_NO_MS`.
pub fn format_iso8601(epoch_secs: i64) -> String {
    let days = epoch_secs.div_euclid(86_400);
    let secs = epoch_secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

fn digits(s: &str, n: usize) -> Option<u32> {
    (s.len() == n && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// Parses an instant: `YYYY-MM-DDTHH:MM:SS[.fraction][Z|±HH:MM|±HHMM]` (a space may stand for
/// `T`; no zone means UTC, as the reference assumes). Fractions are dropped.
pub fn parse_iso8601(s: &str) -> Result<i64, TimeError> {
    let bad = || TimeError::Instant(s.to_string());
    let t = s.trim();
    if t.len() < 19 || !t.is_char_boundary(10) || !t.is_char_boundary(19) {
        return Err(bad());
    }
    let (date, rest) = t.split_at(10);
    let sep = rest.as_bytes()[0];
    if sep != b'T' && sep != b't' && sep != b' ' {
        return Err(bad());
    }
    let time = &rest[1..9];
    let mut zone = &rest[9..];
    let dp: Vec<&str> = date.split('-').collect();
    let tp: Vec<&str> = time.split(':').collect();
    if dp.len() != 3 || tp.len() != 3 {
        return Err(bad());
    }
    let y = digits(dp[0], 4).ok_or_else(bad)? as i64;
    let mo = digits(dp[1], 2).ok_or_else(bad)?;
    let d = digits(dp[2], 2).ok_or_else(bad)?;
    let h = digits(tp[0], 2).ok_or_else(bad)?;
    let mi = digits(tp[1], 2).ok_or_else(bad)?;
    let se = digits(tp[2], 2).ok_or_else(bad)?;
    if !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y, mo) || h > 23 || mi > 59 || se > 60
    {
        return Err(bad());
    }
    if let Some(frac) = zone.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return Err(bad());
        }
        zone = &frac[n..];
    }
    let offset = match zone {
        "" | "Z" | "z" => 0,
        z if z.starts_with('+') || z.starts_with('-') => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let hm = z[1..].replace(':', "");
            let hh = digits(hm.get(..2).ok_or_else(bad)?, 2).ok_or_else(bad)? as i64;
            let mm = digits(hm.get(2..).ok_or_else(bad)?, 2).ok_or_else(bad)? as i64;
            if hh > 23 || mm > 59 {
                return Err(bad());
            }
            sign * (hh * 3600 + mm * 60)
        }
        _ => return Err(bad()),
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + (h * 3600 + mi * 60 + se.min(59)) as i64;
    Ok(secs - offset)
}

/// A half-open time range `[start, end)` in epoch seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: i64,
    pub end: i64,
}

impl Span {
    pub fn overlaps(&self, other: &Span) -> bool {
        self.start < other.end && other.start < self.end
    }
    pub fn contains(&self, t: i64) -> bool {
        self.start <= t && t < self.end
    }
}

/// A period `YYYY`, `YYYY-MM` or `YYYY-MM-DD` as the span it covers, or an instant as a
/// one-second span.
pub fn parse_period(s: &str) -> Result<Span, TimeError> {
    let t = s.trim();
    let bad = || TimeError::Period(s.to_string());
    if let Some(y) = digits(t, 4) {
        let y = y as i64;
        return Ok(Span {
            start: days_from_civil(y, 1, 1) * 86_400,
            end: days_from_civil(y + 1, 1, 1) * 86_400,
        });
    }
    if t.len() == 7 && t.as_bytes()[4] == b'-' {
        let y = digits(&t[..4], 4).ok_or_else(bad)? as i64;
        let m = digits(&t[5..], 2).ok_or_else(bad)?;
        if !(1..=12).contains(&m) {
            return Err(bad());
        }
        let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
        return Ok(Span {
            start: days_from_civil(y, m, 1) * 86_400,
            end: days_from_civil(ny, nm, 1) * 86_400,
        });
    }
    if t.len() == 10 && t.as_bytes()[4] == b'-' && t.as_bytes()[7] == b'-' {
        let start = parse_iso8601(&format!("{t}T00:00:00Z")).map_err(|_| bad())?;
        return Ok(Span {
            start,
            end: start + 86_400,
        });
    }
    let at = parse_iso8601(t).map_err(|_| bad())?;
    Ok(Span {
        start: at,
        end: at + 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_the_reference() {
        assert_eq!(format_iso8601(1_795_509_286), "2026-11-24T08:34:46Z");
        assert_eq!(format_iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_iso8601(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn parses_instants_with_zones_and_fractions() {
        assert_eq!(parse_iso8601("2026-11-24T08:34:46Z"), Ok(1_795_509_286));
        assert_eq!(
            parse_iso8601("2026-11-24T16:34:46+08:00"),
            Ok(1_795_509_286)
        );
        assert_eq!(
            parse_iso8601("2026-11-24T16:34:46.123+0800"),
            Ok(1_795_509_286)
        );
        assert_eq!(parse_iso8601("2026-11-24 08:34:46"), Ok(1_795_509_286));
        for bad in [
            "",
            "2026-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-11-24T08:34",
            "2026-11-24T08:34:46Q",
            "２０２６-11-24T08:34:46Z",
        ] {
            assert!(parse_iso8601(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn round_trips_over_centuries() {
        for t in [
            -86_400 * 365 * 300,
            -1,
            0,
            1,
            4_102_444_800,
            253_402_300_799,
        ] {
            assert_eq!(parse_iso8601(&format_iso8601(t)), Ok(t));
        }
    }

    #[test]
    fn periods() {
        let y = parse_period("2025").unwrap();
        assert_eq!(format_iso8601(y.start), "2025-01-01T00:00:00Z");
        assert_eq!(format_iso8601(y.end), "2026-01-01T00:00:00Z");
        let m = parse_period("2024-02").unwrap();
        assert_eq!(m.end - m.start, 29 * 86_400);
        let d = parse_period("2025-12").unwrap();
        assert_eq!(format_iso8601(d.end), "2026-01-01T00:00:00Z");
        assert!(y.overlaps(&parse_period("2025-06").unwrap()));
        assert!(!y.overlaps(&parse_period("2026-01").unwrap()));
        assert!(parse_period("2025-13").is_err());
        let day = parse_period("2025-03-01").unwrap();
        assert_eq!(
            (format_iso8601(day.start).as_str(), day.end - day.start),
            ("2025-03-01T00:00:00Z", 86_400)
        );
        assert!(parse_period("2025-02-30").is_err());
        assert!(parse_period("25").is_err());
        assert!(
            parse_period("2025-03-01T00:00:00Z")
                .unwrap()
                .contains(1_740_787_200)
        );
    }
}
