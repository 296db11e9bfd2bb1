//! Values of `datetime` attributes (storage-format 3.5).
//!
//! Invariants:
//! - A stored datetime is spelled canonically, `YYYY-MM-DDTHH:MM:SS.mmmZ`:
//!   UTC, millisecond precision, fixed width (24 bytes). Comparing two
//!   canonical spellings byte by byte therefore compares the instants, so
//!   range filters, `order_by`, the attribute index and aggregates need no
//!   datetime-specific code: they compare strings.
//! - Input is ISO 8601 with a mandatory date (`YYYY-MM-DD`); the time is
//!   optional (midnight), the seconds and fraction are optional, the offset
//!   is optional (UTC) and may be `Z`, `±HH:MM`, `±HHMM` or `±HH`; `T`, `t` or
//!   one space separates date and time. Digits below a millisecond are
//!   dropped toward the past (floor), as a conversion to epoch milliseconds
//!   does.
//! - Anything else, and instants outside years 0000..=9999 in UTC (they
//!   would break the fixed width), is not a datetime.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

/// The canonical spelling of the instant `s` names, or `None` when `s` is not
/// an ISO 8601 date or date-time this module accepts.
pub fn canonical(s: &str) -> Option<String> {
    let utc = parse(s)?;
    let millis = utc.timestamp_millis();
    let floored = DateTime::<Utc>::from_timestamp_millis(millis)?;
    (0..=9999).contains(&chrono::Datelike::year(&floored)).then(|| format_canonical(&floored))
}

fn format_canonical(d: &DateTime<Utc>) -> String {
    d.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

fn parse(s: &str) -> Option<DateTime<Utc>> {
    if !has_plain_date(s) {
        return None;
    }
    let s = normalized(s);
    if let Some(d) = parse_date(&s) {
        return Some(d);
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M%#z"] {
        if let Ok(d) = DateTime::parse_from_str(&s, fmt) {
            return Some(d.with_timezone(&Utc));
        }
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(d) = NaiveDateTime::parse_from_str(&s, fmt) {
            return Some(d.and_utc());
        }
    }
    None
}

fn parse_date(s: &str) -> Option<DateTime<Utc>> {
    let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    Some(d.and_hms_opt(0, 0, 0)?.and_utc())
}

/// `YYYY-MM-DD` with exactly four year digits and no sign: chrono's `%Y`
/// alone would also take `+12015-01-20`.
fn has_plain_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 10
        && b.iter().take(4).all(u8::is_ascii_digit)
        && b.get(4) == Some(&b'-')
        && b.get(5..7).is_some_and(|m| m.iter().all(u8::is_ascii_digit))
        && b.get(7) == Some(&b'-')
        && b.get(8..10).is_some_and(|d| d.iter().all(u8::is_ascii_digit))
}

/// One spelling for the separator (`T`) and for UTC (`Z`), which chrono's
/// format strings take in one case only.
fn normalized(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, c) in s.char_indices() {
        out.push(match c {
            ' ' | 't' if i == 10 => 'T',
            'z' if i + 1 == s.len() => 'Z',
            c => c,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Milliseconds since the Unix epoch of the instant `s` names.
    fn epoch_millis(s: &str) -> Option<i64> {
        canonical(s).and_then(|c| parse(&c)).map(|d| d.timestamp_millis())
    }

    #[test]
    fn the_documented_forms_name_their_instants() {
        let cases = [
            ("2015-01-20", "2015-01-20T00:00:00.000Z"),
            ("2015-01-20T12:34:56", "2015-01-20T12:34:56.000Z"),
            ("2015-01-20T12:34:56-04:00", "2015-01-20T16:34:56.000Z"),
            ("2015-01-20T12:34:56Z", "2015-01-20T12:34:56.000Z"),
            ("2015-01-20t12:34:56z", "2015-01-20T12:34:56.000Z"),
            ("2015-01-20 12:34:56+05:30", "2015-01-20T07:04:56.000Z"),
            ("2015-01-20T12:34:56+0530", "2015-01-20T07:04:56.000Z"),
            ("2015-01-20T12:34:56-04", "2015-01-20T16:34:56.000Z"),
            ("2015-01-20T12:34", "2015-01-20T12:34:00.000Z"),
            ("2015-01-20T12:34+01:00", "2015-01-20T11:34:00.000Z"),
            ("2015-01-20T12:34:56.1Z", "2015-01-20T12:34:56.100Z"),
            ("2015-01-20T12:34:56.123456789Z", "2015-01-20T12:34:56.123Z"),
            ("2015-01-20T23:30:00-01:00", "2015-01-21T00:30:00.000Z"),
            ("0000-01-01", "0000-01-01T00:00:00.000Z"),
            ("9999-12-31T23:59:59.999Z", "9999-12-31T23:59:59.999Z"),
        ];
        for (input, want) in cases {
            assert_eq!(canonical(input).as_deref(), Some(want), "{input}");
        }
    }

    #[test]
    fn non_dates_and_out_of_range_instants_are_refused() {
        for s in [
            "not a date",
            "",
            "2015",
            "2015-01",
            "2015-13-01",
            "2015-02-30",
            "2015-01-20T25:00:00Z",
            "2015-01-20T12:34:56 trailing",
            "+12015-01-20",
            "1/20/2015",
            "20150120",
            "9999-12-31T23:00:00-05:00",
            "0000-01-01T00:30:00+01:00",
        ] {
            assert_eq!(canonical(s), None, "{s:?}");
        }
    }

    #[test]
    fn canonical_spellings_order_as_their_instants() {
        let spellings = [
            "1969-12-31T23:59:59.999Z",
            "2015-01-20",
            "2015-01-20T12:34:56-04:00",
            "2015-01-20T12:40:00Z",
            "2015-01-20T16:34:56.001Z",
            "2024-02-29T00:00:00+14:00",
        ];
        let mut by_string: Vec<String> = spellings.iter().filter_map(|s| canonical(s)).collect();
        assert_eq!(by_string.len(), spellings.len());
        let mut by_instant = by_string.clone();
        by_instant.sort_by_key(|c| epoch_millis(c));
        by_string.sort();
        assert_eq!(by_string, by_instant);
        assert_eq!(epoch_millis("1970-01-01T00:00:01Z"), Some(1000));
        assert_eq!(epoch_millis("1969-12-31T23:59:59.9995Z"), Some(-1));
    }

    #[test]
    fn canonical_is_idempotent() {
        for s in ["2015-01-20T12:34:56-04:00", "1969-12-31T23:59:59.9995Z", "2015-01-20"] {
            let c = canonical(s).unwrap();
            assert_eq!(canonical(&c).as_deref(), Some(c.as_str()));
            assert_eq!(c.len(), 24);
        }
    }
}
