//! How the poller says times and durations, the same in every output.

use chrono::{Local, TimeZone};

/// A duration as an admin reads it: "45 s", "11 min", "2 h 14 min",
/// "3 d 4 h".
pub fn duration(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..=119 => format!("{s} s"),
        120..=3599 => format!("{} min", s / 60),
        3600..=172_799 => match (s % 3600) / 60 {
            0 => format!("{} h", s / 3600),
            m => format!("{} h {m} min", s / 3600),
        },
        _ => match (s % 86400) / 3600 {
            0 => format!("{} d", s / 86400),
            h => format!("{} d {h} h", s / 86400),
        },
    }
}

/// A moment in local time: "03:10" today, "Dec 04 03:10" before, the year
/// too when it is not this one's.
pub fn moment(t: i64, now: i64) -> String {
    let (Some(at), Some(today)) = (
        Local.timestamp_opt(t, 0).single(),
        Local.timestamp_opt(now, 0).single(),
    ) else {
        return format!("@{t}");
    };
    if at.date_naive() == today.date_naive() {
        at.format("%H:%M").to_string()
    } else if at.format("%Y").to_string() == today.format("%Y").to_string() {
        at.format("%b %d %H:%M").to_string()
    } else {
        at.format("%Y-%m-%d %H:%M").to_string()
    }
}

/// "since 03:10, 2 h 14 min".
pub fn since(t: i64, now: i64) -> String {
    format!("since {}, {}", moment(t, now), duration(now - t))
}

/// A full timestamp for a log line: "2026-12-06 10:42:03".
pub fn timestamp(t: i64) -> String {
    Local.timestamp_opt(t, 0).single().map_or_else(
        || format!("@{t}"),
        |at| at.format("%Y-%m-%d %H:%M:%S").to_string(),
    )
}

/// Parses a span back from now: "90s", "30m", "1h", "7d" (a bare number is
/// seconds).
pub fn parse_span(text: &str) -> Result<i64, String> {
    let t = text.trim();
    let (digits, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: i64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a span like 90s, 30m, 1h or 7d"))?;
    let per = match unit {
        "" | "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("{text:?}: the unit is s, m, h or d")),
    };
    n.checked_mul(per)
        .ok_or_else(|| format!("{text:?} is too long a span"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_an_admin_says_them() {
        assert_eq!(duration(45), "45 s");
        assert_eq!(duration(660), "11 min");
        assert_eq!(duration(2 * 3600 + 14 * 60 + 5), "2 h 14 min");
        assert_eq!(duration(7200), "2 h");
        assert_eq!(duration(3 * 86400 + 4 * 3600), "3 d 4 h");
        assert_eq!(duration(-5), "0 s");
    }

    #[test]
    fn spans_parse_with_their_unit() {
        assert_eq!(parse_span("90s"), Ok(90));
        assert_eq!(parse_span("30m"), Ok(1800));
        assert_eq!(parse_span("1h"), Ok(3600));
        assert_eq!(parse_span("7d"), Ok(7 * 86400));
        assert_eq!(parse_span("120"), Ok(120));
        assert!(parse_span("1w")
            .unwrap_err()
            .contains("unit is s, m, h or d"));
        assert!(parse_span("h").is_err());
        assert!(parse_span("99999999999999999999d").is_err());
    }
}
