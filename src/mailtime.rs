//! Dates in the forms local mail files use: IMAP INTERNALDATE (`05-Mar-2021 14:03:07 +0100`),
//! the `asctime` date of an mbox `From ` line (`Fri Mar  5 13:03:07 2021`, UTC), and Unix time
//! (a Maildir file's mtime). Parsing never panics; it returns `None` on anything malformed.

use std::fmt;

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

/// An IMAP INTERNALDATE (RFC 3501 `date-time`): a calendar date and time of day in the zone
/// of its offset. Servers send it and APPEND takes it; everything from a server, a bundle or a
/// file is parsed into this type, and only its own rendering ([`fmt::Display`]) ever goes into
/// a command, so no byte a server chose can reach host2 as protocol text.
///
/// Parsing is strict: exactly `DD-Mon-YYYY HH:MM:SS +HHMM` (a day below 10 may have a leading
/// space or zero instead), a real calendar day, hours below 24, a zone of at most ±23:59.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InternalDate {
    year: u16,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
    /// Minutes east of UTC.
    zone: i16,
}

impl InternalDate {
    /// The strict parse of `s` (see the type); `None` for anything else, trailing or leading
    /// bytes included.
    pub fn parse(s: &str) -> Option<InternalDate> {
        Self::parse_bytes(s.as_bytes())
    }

    /// [`InternalDate::parse`] of bytes as a server sent them.
    pub fn parse_bytes(b: &[u8]) -> Option<InternalDate> {
        if b.len() != 26 {
            return None;
        }
        let num = |r: std::ops::Range<usize>| -> Option<u32> {
            let d = &b[r];
            d.iter()
                .all(u8::is_ascii_digit)
                .then(|| d.iter().fold(0u32, |n, &c| n * 10 + u32::from(c - b'0')))
        };
        let day = match b[0] {
            b' ' | b'0' => num(1..2)?,
            _ => num(0..2)?,
        };
        let month = MONTHS
            .iter()
            .position(|m| m.as_bytes().eq_ignore_ascii_case(&b[3..6]))? as u8
            + 1;
        let year = num(7..11)?;
        let (hour, minute, second) = (num(12..14)?, num(15..17)?, num(18..20)?);
        let sign: i16 = match b[21] {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        let (zh, zm) = (num(22..24)?, num(24..26)?);
        let punct = [
            (2, b'-'),
            (6, b'-'),
            (11, b' '),
            (14, b':'),
            (17, b':'),
            (20, b' '),
        ];
        if punct.iter().any(|&(i, c)| b[i] != c)
            || year == 0
            || day == 0
            || day > days_in_month(i64::from(year), i64::from(month)) as u32
            || hour > 23
            || minute > 59
            || second > 60
            || zh > 23
            || zm > 59
        {
            return None;
        }
        Some(InternalDate {
            year: year as u16,
            month,
            day: day as u8,
            hour: hour as u8,
            minute: minute as u8,
            second: second as u8,
            zone: sign * (zh as i16 * 60 + zm as i16),
        })
    }

    /// Unix time `t` as an INTERNALDATE in UTC (`+0000`). Years are clamped to 1–9999.
    pub fn from_unix(t: i64) -> InternalDate {
        let t = t.clamp(MIN_UNIX, MAX_UNIX);
        let (y, m, d) = civil_from_days(t.div_euclid(86_400));
        let s = t.rem_euclid(86_400);
        InternalDate {
            year: y as u16,
            month: m as u8,
            day: d as u8,
            hour: (s / 3600) as u8,
            minute: (s / 60 % 60) as u8,
            second: (s % 60) as u8,
            zone: 0,
        }
    }

    /// Seconds since the Unix epoch.
    pub fn unix(&self) -> i64 {
        let local = days_from_civil(
            i64::from(self.year),
            i64::from(self.month),
            i64::from(self.day),
        ) * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second);
        local - i64::from(self.zone) * 60
    }

    /// The year as written.
    pub fn year(&self) -> u16 {
        self.year
    }
}

impl fmt::Display for InternalDate {
    /// `05-Mar-2021 14:03:07 +0100`: always 26 characters, ASCII, no quote, no line break.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (sign, zone) = if self.zone < 0 {
            ('-', -self.zone)
        } else {
            ('+', self.zone)
        };
        write!(
            f,
            "{:02}-{}-{:04} {:02}:{:02}:{:02} {sign}{:02}{:02}",
            self.day,
            MONTHS[usize::from(self.month - 1)],
            self.year,
            self.hour,
            self.minute,
            self.second,
            zone / 60,
            zone % 60
        )
    }
}

impl std::str::FromStr for InternalDate {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<InternalDate> {
        InternalDate::parse(s).ok_or_else(|| {
            anyhow::anyhow!(
                "not an IMAP date-time (want DD-Mon-YYYY HH:MM:SS +HHMM): {}",
                crate::text::printable(s)
            )
        })
    }
}

/// 0001-01-01 00:00:00 UTC and 9999-12-31 23:59:59 UTC.
const MIN_UNIX: i64 = -62_135_596_800;
const MAX_UNIX: i64 = 253_402_300_799;

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Unix time of a strict IMAP date-time such as `05-Mar-2021 14:03:07 +0100` (see
/// [`InternalDate`]).
pub fn parse_internaldate(s: &str) -> Option<i64> {
    InternalDate::parse(s).map(|d| d.unix())
}

/// `YYYY-MM-DD HH:MM:SS UTC` for Unix time `t`, for people reading a report.
pub fn format_utc(t: i64) -> String {
    let (date, time) = utc_parts(t);
    format!("{date} {time} UTC")
}

/// `YYYY-MM-DD` and `HH:MM:SS` of Unix time `t` in UTC.
fn utc_parts(t: i64) -> (String, String) {
    let (y, m, d) = civil_from_days(t.div_euclid(86_400));
    let s = t.rem_euclid(86_400);
    let time = format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
    (format!("{y:04}-{m:02}-{d:02}"), time)
}

/// RFC 3339 in UTC for Unix time `t`: `2026-11-30T08:21:20Z`.
pub fn format_rfc3339(t: i64) -> String {
    let (date, time) = utc_parts(t);
    format!("{date}T{time}Z")
}

/// An IMAP date-time in UTC for Unix time `t`: `05-Mar-2021 13:03:07 +0000`.
pub fn format_internaldate(t: i64) -> String {
    InternalDate::from_unix(t).to_string()
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
    fn rfc3339_is_utc_with_a_z() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

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
    fn internaldate_is_strict_and_renders_only_safe_text() {
        let d = InternalDate::parse("05-Mar-2021 14:03:07 +0100").unwrap();
        assert_eq!(d.to_string(), "05-Mar-2021 14:03:07 +0100");
        assert_eq!(d.unix(), 1_614_949_387);
        assert_eq!(
            InternalDate::parse(" 5-mar-2021 14:03:07 +0100").unwrap(),
            d,
            "a leading space and any case of the month are RFC 3501"
        );
        for bad in [
            "05-Mar-2021 14:03:07 +0100\r\nX1 DELETE INBOX.Victim",
            "05-Mar-2021 14:03:07 +0100 ",
            " 05-Mar-2021 14:03:07 +0100",
            "05-Mar-2021  14:03:07 +0100",
            "31-Feb-2021 14:03:07 +0100",
            "29-Feb-2021 14:03:07 +0100",
            "05-Mar-2021 24:00:00 +0100",
            "05-Mar-2021 14:03:07 +2400",
            "05-Mar-2021 14:03:07 0100",
            "05-Mar-0000 14:03:07 +0100",
            "5-Mar-2021 14:03:07 +0100",
            "05-Mar-2021 14:03:07 +01\"0",
            "",
        ] {
            assert_eq!(InternalDate::parse(bad), None, "{bad:?}");
        }
        assert!(InternalDate::parse("29-Feb-2024 23:59:60 -1259").is_some());
    }

    proptest::proptest! {
        #[test]
        fn any_parsed_date_renders_to_itself_and_never_to_protocol_text(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 26..=26),
            t in MIN_UNIX..MAX_UNIX,
        ) {
            if let Some(d) = InternalDate::parse_bytes(&bytes) {
                let s = d.to_string();
                proptest::prop_assert_eq!(InternalDate::parse(&s), Some(d));
                proptest::prop_assert!(s.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\'));
            }
            let d = InternalDate::from_unix(t);
            proptest::prop_assert_eq!(d.unix(), t);
            proptest::prop_assert_eq!(InternalDate::parse(&d.to_string()), Some(d));
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
