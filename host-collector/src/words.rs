//! Time words for people: a Unix time in the local zone, "how long ago".
//! A leaf: it imports nothing of this crate, so every module may use it.

/// A Unix time in the local time zone, in a strftime `format`; `None`
/// for a time chrono cannot represent.
pub fn local_time(t: i64, format: &str) -> Option<String> {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.with_timezone(&chrono::Local).format(format).to_string())
}

/// A time for humans: local date and time, and how long ago.
pub fn when(t: i64, now: i64) -> String {
    let local = local_time(t, "%Y-%m-%d %H:%M").unwrap_or_else(|| t.to_string());
    format!("{local} ({} ago)", ago(now - t))
}

/// A duration in the largest unit that keeps it readable (`90 s`,
/// `10 min`, `3 h`, `3 days`); a negative one is `0 s`.
pub fn ago(secs: i64) -> String {
    let s = secs.max(0);
    if s < 120 {
        format!("{s} s")
    } else if s < 7200 {
        format!("{} min", s / 60)
    } else if s < 172_800 {
        format!("{} h", s / 3600)
    } else {
        format!("{} days", s / 86400)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        assert_eq!(ago(30), "30 s");
        assert_eq!(ago(-5), "0 s");
        assert_eq!(ago(600), "10 min");
        assert_eq!(ago(3 * 3600), "3 h");
        assert_eq!(ago(3 * 86400), "3 days");
    }

    #[test]
    fn when_says_how_long_ago() {
        assert!(when(1_000_000, 1_000_600).ends_with(" (10 min ago)"));
        assert_eq!(local_time(i64::MAX, "%Y"), None);
    }
}
