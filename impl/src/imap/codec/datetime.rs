//! IMAP `date-time` (RFC 3501 section 9): `"dd-Mon-yyyy hh:mm:ss +zzzz"`, parsed and printed.

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// An INTERNALDATE: seconds since the Unix epoch (UTC) and the zone it was given in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InternalDate {
    /// Seconds since 1970-01-01T00:00:00Z.
    pub unix: i64,
    /// Zone offset in minutes east of UTC.
    pub zone_minutes: i32,
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
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

fn digits(s: &[u8]) -> Option<u32> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

impl InternalDate {
    /// Parse the inside of a `date-time` (without the DQUOTEs).
    pub fn parse(s: &[u8]) -> Option<InternalDate> {
        // "dd-Mon-yyyy hh:mm:ss +zzzz" (26 octets) with day " d" or "dd".
        if s.len() != 26 {
            return None;
        }
        let day = match s.get(0..2)? {
            [b' ', d] => digits(&[*d])?,
            dd => digits(dd)?,
        };
        if s.get(2) != Some(&b'-') || s.get(6) != Some(&b'-') || s.get(11) != Some(&b' ') {
            return None;
        }
        let mon = s.get(3..6)?;
        let month = MONTHS
            .iter()
            .position(|m| m.as_bytes().eq_ignore_ascii_case(mon))? as u32
            + 1;
        let year = i64::from(digits(s.get(7..11)?)?);
        let hh = digits(s.get(12..14)?)?;
        let mm = digits(s.get(15..17)?)?;
        let ss = digits(s.get(18..20)?)?;
        if s.get(14) != Some(&b':') || s.get(17) != Some(&b':') || s.get(20) != Some(&b' ') {
            return None;
        }
        let sign = match s.get(21)? {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        let zh = digits(s.get(22..24)?)?;
        let zm = digits(s.get(24..26)?)?;
        if day == 0 || day > days_in_month(year, month) || hh > 23 || mm > 59 || ss > 60 || zm > 59
        {
            return None;
        }
        let zone_minutes = sign * (zh * 60 + zm) as i32;
        let local = days_from_civil(year, month, day) * 86_400
            + i64::from(hh) * 3600
            + i64::from(mm) * 60
            + i64::from(ss);
        Some(InternalDate {
            unix: local - i64::from(zone_minutes) * 60,
            zone_minutes,
        })
    }

    /// The current time in UTC.
    pub fn now() -> InternalDate {
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        InternalDate {
            unix,
            zone_minutes: 0,
        }
    }

    /// `dd-Mon-yyyy hh:mm:ss +zzzz` (without quotes).
    pub fn format(&self) -> String {
        let local = self.unix + i64::from(self.zone_minutes) * 60;
        let (y, m, d) = civil_from_days(local.div_euclid(86_400));
        let secs = local.rem_euclid(86_400);
        let sign = if self.zone_minutes < 0 { '-' } else { '+' };
        let z = self.zone_minutes.unsigned_abs();
        let mon = MONTHS.get((m as usize).saturating_sub(1)).unwrap_or(&"Jan");
        format!(
            "{d:02}-{mon}-{y:04} {:02}:{:02}:{:02} {sign}{:02}{:02}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60,
            z / 60,
            z % 60
        )
    }
}

/// A SEARCH `date` (`d-Mon-yyyy` or `dd-Mon-yyyy`, RFC 3501 section 9) as days since
/// 1970-01-01.
pub fn parse_search_date(s: &[u8]) -> Option<i64> {
    let mut parts = s.split(|&b| b == b'-');
    let (d, m, y) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || d.len() > 2 || y.len() != 4 {
        return None;
    }
    civil_day(digits(d)?, m, digits(y)?)
}

/// Days since 1970-01-01 of day `d` of month name `mon` of year `y`, if that date exists.
fn civil_day(d: u32, mon: &[u8], y: u32) -> Option<i64> {
    let month = MONTHS
        .iter()
        .position(|m| m.as_bytes().eq_ignore_ascii_case(mon))? as u32
        + 1;
    let y = i64::from(y);
    if d == 0 || d > days_in_month(y, month) {
        return None;
    }
    Some(days_from_civil(y, month, d))
}

/// The date (days since 1970-01-01) of an RFC 5322 `Date:` field value, disregarding time and
/// timezone (RFC 3501 SENTBEFORE/SENTON/SENTSINCE): `[Day ","] d Mon yyyy ...`. Two-digit
/// years are read as RFC 5322 section 4.3 says (00-49: 20xx, 50-99: 19xx).
pub fn parse_header_date(v: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(v).ok()?;
    let text = match text.find(',') {
        Some(i) => text.get(i + 1..)?,
        None => text,
    };
    let mut words = text.split_ascii_whitespace();
    let d = digits(words.next()?.as_bytes())?;
    let mon = words.next()?;
    let ys = words.next()?;
    let y = digits(ys.as_bytes())?;
    let y = match ys.len() {
        2 if y < 50 => 2000 + y,
        2 => 1900 + y,
        3 => 1900 + y,
        4 => y,
        _ => return None,
    };
    civil_day(d, mon.as_bytes(), y)
}

impl InternalDate {
    /// The date (days since 1970-01-01) in the zone the INTERNALDATE was given in: what
    /// SEARCH BEFORE/ON/SINCE compare, "disregarding time and timezone".
    pub fn day(&self) -> i64 {
        (self.unix + i64::from(self.zone_minutes) * 60).div_euclid(86_400)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let d = InternalDate::parse(b"17-Jul-1996 02:44:25 -0700").unwrap();
        assert_eq!(d.unix, 837_596_665);
        assert_eq!(d.format(), "17-Jul-1996 02:44:25 -0700");
        let d = InternalDate::parse(b" 1-Feb-2024 00:00:00 +0000").unwrap();
        assert_eq!(d.format(), "01-Feb-2024 00:00:00 +0000");
        assert!(InternalDate::parse(b"31-Feb-2024 00:00:00 +0000").is_none());
        assert!(InternalDate::parse(b"17-Jux-1996 02:44:25 -0700").is_none());
        assert!(InternalDate::parse(b"17-Jul-1996 02:44:25 0700").is_none());
        assert!(InternalDate::parse(b"garbage").is_none());
    }

    #[test]
    fn search_dates() {
        let feb7 = parse_search_date(b"7-Feb-1994").unwrap();
        assert_eq!(parse_search_date(b"07-feb-1994"), Some(feb7));
        assert!(parse_search_date(b"30-Feb-1994").is_none());
        assert!(parse_search_date(b"7-Feb-94").is_none());
        assert!(parse_search_date(b"7-Feb-1994-1").is_none());
        // 23:30 -0800 on the 7th is the 8th in UTC; the date as given counts.
        let d = InternalDate::parse(b"07-Feb-1994 23:30:00 -0800").unwrap();
        assert_eq!(d.day(), feb7);
        let d = InternalDate::parse(b"08-Feb-1994 00:30:00 +0200").unwrap();
        assert_eq!(d.day(), feb7 + 1);
        assert_eq!(
            parse_header_date(b"Mon, 7 Feb 1994 21:52:25 -0800 (PST)"),
            Some(feb7)
        );
        assert_eq!(parse_header_date(b"7 Feb 94 21:52:25 -0800"), Some(feb7));
        assert_eq!(parse_header_date(b"  07 FEB 1994 00:00 +0000"), Some(feb7));
        assert!(parse_header_date(b"yesterday").is_none());
    }
}
