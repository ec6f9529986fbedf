//! Dates in the forms local mail files use: IMAP INTERNALDATE (`05-Mar-2021 14:03:07 +0100`),
//! the `asctime` date of an mbox `From ` line (`Fri Mar  5 13:03:07 2021`, UTC), and Unix time
//! (a Maildir file's mtime). Parsing never panics; it returns `None` on anything malformed.

/// IMAP / RFC 5322 month names.
pub const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month 1–12, day) of a day number since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn month_number(name: &str) -> Option<i64> {
    MONTHS
        .iter()
        .position(|m| m.eq_ignore_ascii_case(name))
        .map(|i| i as i64 + 1)
}

fn hms(s: &str) -> Option<i64> {
    let mut it = s.split(':');
    let h: i64 = it.next()?.parse().ok()?;
    let m: i64 = it.next()?.parse().ok()?;
    let sec: i64 = it.next().map_or(Some(0), |x| x.parse().ok())?;
    if it.next().is_some() || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    Some(h * 3600 + m * 60 + sec)
}

/// Unix time of an IMAP date-time such as `05-Mar-2021 14:03:07 +0100` (a leading space for
/// the day is accepted).
pub fn parse_internaldate(s: &str) -> Option<i64> {
    let mut it = s.split_whitespace();
    let (date, time, zone) = (it.next()?, it.next()?, it.next()?);
    let mut d = date.split('-');
    let (day, month, year) = (d.next()?, d.next()?, d.next()?);
    let day: i64 = day.trim().parse().ok()?;
    let year: i64 = year.parse().ok()?;
    let month = month_number(month)?;
    if !(1..=31).contains(&day) || zone.len() != 5 {
        return None;
    }
    let sign = match zone.as_bytes()[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let zh: i64 = zone.get(1..3)?.parse().ok()?;
    let zm: i64 = zone.get(3..5)?.parse().ok()?;
    let local = days_from_civil(year, month, day) * 86_400 + hms(time)?;
    Some(local - sign * (zh * 3600 + zm * 60))
}

/// `YYYY-MM-DD HH:MM:SS UTC` for Unix time `t`, for people reading a report.
pub fn format_utc(t: i64) -> String {
    let (y, m, d) = civil_from_days(t.div_euclid(86_400));
    let s = t.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// An IMAP date-time in UTC for Unix time `t`: `05-Mar-2021 13:03:07 +0000`.
pub fn format_internaldate(t: i64) -> String {
    let (y, m, d) = civil_from_days(t.div_euclid(86_400));
    let s = t.rem_euclid(86_400);
    format!(
        "{d:02}-{}-{y:04} {:02}:{:02}:{:02} +0000",
        MONTHS[(m - 1) as usize],
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// The `asctime` form of Unix time `t` in UTC, as mbox `From ` lines carry it:
/// `Fri Mar  5 13:03:07 2021`.
pub fn format_asctime(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let s = t.rem_euclid(86_400);
    format!(
        "{} {} {d:>2} {:02}:{:02}:{:02} {y}",
        WEEKDAYS[days.rem_euclid(7) as usize],
        MONTHS[(m - 1) as usize],
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// Unix time of an `asctime` date (`Fri Mar  5 13:03:07 2021`, taken as UTC) at the start of
/// `s`; anything after the year (a zone, `remote from …`) is ignored. The weekday is not checked.
pub fn parse_asctime(s: &str) -> Option<i64> {
    let mut it = s.split_whitespace();
    let _weekday = it.next()?;
    let month = month_number(it.next()?)?;
    let day: i64 = it.next()?.parse().ok()?;
    let time = hms(it.next()?)?;
    let mut year_s = it.next()?;
    // Some writers put a zone before the year: `… 13:03:07 +0100 2021`.
    if year_s.starts_with(['+', '-']) || year_s.chars().all(|c| c.is_ascii_alphabetic()) {
        year_s = it.next()?;
    }
    let year: i64 = year_s.parse().ok()?;
    if !(1..=31).contains(&day) {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_utc_gives_calendar_dates() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_utc(1_709_210_096), "2024-02-29 12:34:56 UTC");
    }

    #[test]
    fn internaldate_round_trip() {
        let t = parse_internaldate("05-Mar-2021 14:03:07 +0100").unwrap();
        assert_eq!(t, 1_614_949_387);
        assert_eq!(format_internaldate(t), "05-Mar-2021 13:03:07 +0000");
        assert_eq!(parse_internaldate(&format_internaldate(t)), Some(t));
        assert_eq!(parse_internaldate(" 5-Mar-2021 13:03:07 +0000"), Some(t));
        assert_eq!(parse_internaldate("01-Jan-1970 00:00:00 -0130"), Some(5400));
        for bad in [
            "",
            "05-Foo-2021 14:03:07 +0100",
            "05-Mar-2021 14:03 +01",
            "x y z",
        ] {
            assert_eq!(parse_internaldate(bad), None, "{bad}");
        }
    }

    #[test]
    fn asctime_round_trip() {
        let t = 1_614_949_387;
        assert_eq!(format_asctime(t), "Fri Mar  5 13:03:07 2021");
        assert_eq!(parse_asctime("Fri Mar  5 13:03:07 2021"), Some(t));
        assert_eq!(
            parse_asctime("Fri Mar 5 13:03:07 2021 remote from x"),
            Some(t)
        );
        assert_eq!(format_asctime(0), "Thu Jan  1 00:00:00 1970");
        assert_eq!(parse_asctime("garbage"), None);
    }
}
