//! Five-field cron expressions (`minute hour day-of-month month day-of-week`) evaluated in a
//! time zone, parsed and matched by the [`croner`] crate.
//!
//! Fields take `*`, numbers, ranges `a-b`, steps `*/n`, `a-b/n` and `a/n` (from `a` to the end),
//! comma lists, and names: `JAN`-`DEC` in the month field, `SUN`-`SAT` in the day-of-week field
//! (any case). `@yearly` (`@annually`), `@monthly`, `@weekly` (Sunday), `@daily` and `@hourly`
//! stand for a whole expression. Day-of-week 0 and 7 are Sunday. As in
//! Vixie cron, when both day fields are restricted (neither is `*`) a day matches if EITHER
//! does: `0 0 1 * MON` fires on the 1st and on every Monday. croner's extensions work too: `L`
//! (last day of the month, or `5L` the last Friday), `15W` (the weekday nearest the 15th),
//! `MON#1` (the first Monday), and a `+` before the day-of-week field to require both day fields.
//!
//! Local times that a daylight-saving change skips do not fire (croner alone would run them at
//! the end of the gap); a time that happens twice fires once, at its first occurrence.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::errors::CronError as CronerError;
use croner::parser::{CronParser, Seconds, Year};

/// A parsed cron expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    text: String,
    cron: croner::Cron,
}

/// A cron expression that does not parse; the message names the field and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cron expression '{text}': {reason}")]
pub struct CronError {
    text: String,
    reason: String,
}

impl CronError {
    /// What is wrong, without the expression.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// The fields in order, with what each accepts (for error messages).
const FIELDS: [(&str, &str); 5] = [
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day of month", "1-31, L, W"),
    ("month", "1-12 or JAN-DEC"),
    ("day of week", "0-7 (0 and 7 are Sunday) or SUN-SAT, L, #"),
];

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
const SHORTHANDS: [&str; 6] = [
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@hourly",
];

/// Five fields, no seconds or years; the Vixie day rule (`dom_and_dow` off); `a/n` accepted.
fn parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .dom_and_dow(false)
        .sloppy_ranges(true)
        .build()
}

/// croner's message without its prefix.
fn croner_reason(e: &CronerError) -> String {
    let msg = match e {
        CronerError::InvalidPattern(m)
        | CronerError::IllegalCharacters(m)
        | CronerError::ComponentError(m) => m.clone(),
        e => e.to_string(),
    };
    msg.trim_end_matches('.').to_string()
}

/// A name of the wrong kind in the month or day-of-week field (croner reads names anywhere, so
/// `JAN` in the day-of-week field would silently mean Monday).
fn misplaced_name(field: &str, index: usize) -> Option<String> {
    let upper = field.to_ascii_uppercase();
    let (names, kind, allowed): (&[&str], _, &[&str]) = match index {
        3 => (&MONTHS, "a month name (JAN-DEC)", &[]),
        4 => (&WEEKDAYS, "a weekday name (SUN-SAT)", &["L"]),
        _ => return None,
    };
    upper
        .split(|c: char| !c.is_ascii_alphabetic())
        .filter(|word| !word.is_empty())
        .find(|word| !names.contains(word) && !allowed.contains(word))
        .map(|word| format!("{} '{field}': '{word}' is not {kind}", FIELDS[index].0))
}

/// Says which field of a five-field expression croner rejects, and why.
fn diagnose(fields: &[&str]) -> Option<String> {
    (0..5).find_map(|i| {
        if let Some(reason) = misplaced_name(fields[i], i) {
            return Some(reason);
        }
        let alone: Vec<&str> = (0..5)
            .map(|j| if j == i { fields[i] } else { "*" })
            .collect();
        parser().parse(&alone.join(" ")).err().map(|e| {
            let (name, allowed) = FIELDS[i];
            format!(
                "{name} '{}': {} (allowed: {allowed})",
                fields[i],
                croner_reason(&e)
            )
        })
    })
}

impl FromStr for Cron {
    type Err = CronError;

    fn from_str(text: &str) -> Result<Cron, CronError> {
        let err = |reason: String| CronError {
            text: text.to_string(),
            reason,
        };
        let trimmed = text.trim();
        if trimmed.starts_with('@') {
            if !SHORTHANDS.iter().any(|s| s.eq_ignore_ascii_case(trimmed)) {
                return Err(err(format!(
                    "'{trimmed}' is not a shorthand; use one of {} or five fields",
                    SHORTHANDS.join(", ")
                )));
            }
        } else {
            let fields: Vec<&str> = trimmed.split_whitespace().collect();
            if fields.len() != 5 {
                return Err(err(format!(
                    "has {} fields; write five: minute hour day-of-month month day-of-week \
                     (e.g. \"30 2 * * *\"), or a shorthand such as @daily",
                    fields.len()
                )));
            }
            if let Some(reason) = diagnose(&fields) {
                return Err(err(reason));
            }
        }
        let cron = parser()
            .parse(trimmed)
            .map_err(|e| err(croner_reason(&e)))?;
        Ok(Cron {
            text: text.to_string(),
            cron,
        })
    }
}

impl fmt::Display for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Cron {
    /// Whether the expression fires at `t`: its wall-clock time matches, and it is that wall-clock
    /// time's first occurrence. croner moves a fixed time that a daylight-saving gap skips to the
    /// end of the gap, and fires `*/n`-style expressions on both passes of a repeated hour.
    fn fires_at(&self, t: &DateTime<Tz>) -> bool {
        self.cron.is_time_matching(t).unwrap_or(false)
            && t.timezone()
                .from_local_datetime(&t.naive_local())
                .earliest()
                .as_ref()
                == Some(t)
    }

    /// The first firing strictly after `after`, in time zone `tz`; `None` if it never fires
    /// (such as `0 0 30 2 *`).
    pub fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        let mut from = after.with_timezone(&tz);
        // Candidates are passed over only inside a daylight-saving change, at most one per
        // minute of the change: a day's worth is plenty.
        for _ in 0..24 * 60 {
            let t = self.cron.find_next_occurrence(&from, false).ok()?;
            if self.fires_at(&t) {
                return Some(t.with_timezone(&Utc));
            }
            from = t;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn cron(s: &str) -> Cron {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    /// The next `n` firings after `from`, in UTC.
    fn firings(c: &Cron, from: &str, tz: Tz, n: usize) -> Vec<DateTime<Utc>> {
        let mut t = utc(from);
        let mut out = Vec::new();
        for _ in 0..n {
            t = c.next_after(t, tz).unwrap();
            out.push(t);
        }
        out
    }

    #[test]
    fn daily_time_in_utc_and_in_a_zone() {
        let c = cron("30 2 * * *");
        assert_eq!(
            c.next_after(utc("2024-01-05T03:00:00Z"), Tz::UTC),
            Some(utc("2024-01-06T02:30:00Z"))
        );
        assert_eq!(
            c.next_after(utc("2024-01-05T02:00:00Z"), Tz::UTC),
            Some(utc("2024-01-05T02:30:00Z"))
        );
        // Strictly after: the firing time itself moves on to the next day.
        assert_eq!(
            c.next_after(utc("2024-01-05T02:30:00Z"), Tz::UTC),
            Some(utc("2024-01-06T02:30:00Z"))
        );
        assert_eq!(
            c.next_after(utc("2024-01-05T02:29:59.5Z"), Tz::UTC),
            Some(utc("2024-01-05T02:30:00Z"))
        );
        // 02:30 in Paris is 01:30 UTC in winter and 00:30 UTC in summer.
        let paris = chrono_tz::Europe::Paris;
        assert_eq!(
            c.next_after(utc("2024-01-05T03:00:00Z"), paris),
            Some(utc("2024-01-06T01:30:00Z"))
        );
        assert_eq!(
            c.next_after(utc("2024-07-05T03:00:00Z"), paris),
            Some(utc("2024-07-06T00:30:00Z"))
        );
        // 2024-03-31 has no 02:30 in Paris (clocks jump 02:00 → 03:00): that day does not fire.
        assert_eq!(
            c.next_after(utc("2024-03-30T12:00:00Z"), paris),
            Some(utc("2024-04-01T00:30:00Z"))
        );
    }

    #[test]
    fn a_repeated_local_time_fires_once_at_its_first_occurrence() {
        // 2024-10-27 in Paris: 03:00 CEST (01:00 UTC) goes back to 02:00 CET, so 02:00-02:59
        // happens at 00:00-00:59 UTC and again at 01:00-01:59 UTC.
        let paris = chrono_tz::Europe::Paris;
        assert_eq!(
            firings(&cron("30 2 * * *"), "2024-10-26T12:00:00Z", paris, 2),
            [utc("2024-10-27T00:30:00Z"), utc("2024-10-28T01:30:00Z")]
        );
        assert_eq!(
            firings(&cron("*/30 * * * *"), "2024-10-26T23:45:00Z", paris, 4),
            [
                utc("2024-10-27T00:00:00Z"),
                utc("2024-10-27T00:30:00Z"),
                // 02:00 and 02:30 CET are skipped: they already fired in CEST.
                utc("2024-10-27T02:00:00Z"),
                utc("2024-10-27T02:30:00Z"),
            ]
        );
        // Started inside the second pass, it waits for the first time after the repeated hour.
        assert_eq!(
            cron("*/30 * * * *").next_after(utc("2024-10-27T01:10:00Z"), paris),
            Some(utc("2024-10-27T02:00:00Z"))
        );
    }

    #[test]
    fn lists_ranges_steps_and_weekdays() {
        let c = cron("*/15 9-17/4 * * 1-5");
        // 2024-01-06 is a Saturday: the next firing is Monday 09:00.
        assert_eq!(
            c.next_after(utc("2024-01-05T17:50:00Z"), Tz::UTC),
            Some(utc("2024-01-08T09:00:00Z"))
        );
        assert_eq!(
            c.next_after(utc("2024-01-08T09:00:00Z"), Tz::UTC),
            Some(utc("2024-01-08T09:15:00Z"))
        );
        assert_eq!(
            c.next_after(utc("2024-01-08T09:45:00Z"), Tz::UTC),
            Some(utc("2024-01-08T13:00:00Z"))
        );
        let sundays = cron("0 0 * * 7");
        assert_eq!(
            sundays.next_after(utc("2024-01-01T00:00:00Z"), Tz::UTC),
            Some(utc("2024-01-07T00:00:00Z"))
        );
        // `a/n`: from a to the end of the field.
        assert_eq!(
            firings(&cron("5/20 0 * * *"), "2024-01-01T00:00:00Z", Tz::UTC, 3),
            [
                utc("2024-01-01T00:05:00Z"),
                utc("2024-01-01T00:25:00Z"),
                utc("2024-01-01T00:45:00Z")
            ]
        );
        let never = cron("0 0 30 2 *");
        assert_eq!(never.next_after(utc("2024-01-01T00:00:00Z"), Tz::UTC), None);
    }

    #[test]
    fn month_and_weekday_names() {
        // 2024-01-05 is a Friday.
        for text in ["0 2 * * MON-FRI", "0 2 * * mon-fri", "0 2 * JAN-DEC 1-5"] {
            assert_eq!(
                firings(&cron(text), "2024-01-05T03:00:00Z", Tz::UTC, 2),
                [utc("2024-01-08T02:00:00Z"), utc("2024-01-09T02:00:00Z")],
                "{text}"
            );
        }
        assert_eq!(
            firings(
                &cron("0 0 1 MAR,SEP SUN"),
                "2024-01-01T00:00:00Z",
                Tz::UTC,
                3
            ),
            [
                utc("2024-03-01T00:00:00Z"),
                utc("2024-03-03T00:00:00Z"),
                utc("2024-03-10T00:00:00Z")
            ]
        );
        assert_eq!(
            cron("0 0 * * MON-SUN").next_after(utc("2024-01-06T12:00:00Z"), Tz::UTC),
            Some(utc("2024-01-07T00:00:00Z"))
        );
    }

    #[test]
    fn shorthands() {
        let from = "2024-01-05T03:20:00Z"; // a Friday
        let next = |text: &str| cron(text).next_after(utc(from), Tz::UTC).unwrap();
        assert_eq!(next("@daily"), utc("2024-01-06T00:00:00Z"));
        assert_eq!(next("@DAILY"), utc("2024-01-06T00:00:00Z"));
        assert_eq!(next("@hourly"), utc("2024-01-05T04:00:00Z"));
        assert_eq!(next("@weekly"), utc("2024-01-07T00:00:00Z"));
        assert_eq!(next("@monthly"), utc("2024-02-01T00:00:00Z"));
        assert_eq!(next("@yearly"), utc("2025-01-01T00:00:00Z"));
        assert_eq!(next("@annually"), utc("2025-01-01T00:00:00Z"));
        // In a zone, @daily is local midnight.
        assert_eq!(
            cron("@daily").next_after(utc(from), chrono_tz::Europe::Paris),
            Some(utc("2024-01-05T23:00:00Z"))
        );
        assert_eq!(cron("@daily").to_string(), "@daily");
    }

    #[test]
    fn both_day_fields_restricted_match_either_vixie_rule() {
        // 2024-01-01 is a Monday; the next Mondays are the 8th, 15th, 22nd, 29th, 5 Feb.
        let c = cron("0 0 1 * MON");
        assert_eq!(
            firings(&c, "2024-01-01T00:00:00Z", Tz::UTC, 6),
            [
                utc("2024-01-08T00:00:00Z"),
                utc("2024-01-15T00:00:00Z"),
                utc("2024-01-22T00:00:00Z"),
                utc("2024-01-29T00:00:00Z"),
                // The 1st of February is a Thursday: it fires as the 1st.
                utc("2024-02-01T00:00:00Z"),
                utc("2024-02-05T00:00:00Z"),
            ]
        );
        // Only one day field restricted: only it counts.
        assert_eq!(
            firings(&cron("0 0 1 * *"), "2024-01-01T00:00:00Z", Tz::UTC, 1),
            [utc("2024-02-01T00:00:00Z")]
        );
        assert_eq!(
            firings(&cron("0 0 * * MON"), "2024-01-29T00:00:00Z", Tz::UTC, 1),
            [utc("2024-02-05T00:00:00Z")]
        );
        // `+` asks for both: the 1st when it is a Monday (2024-04-01, then 2024-07-01).
        assert_eq!(
            firings(&cron("0 0 1 * +MON"), "2024-01-01T00:00:00Z", Tz::UTC, 2),
            [utc("2024-04-01T00:00:00Z"), utc("2024-07-01T00:00:00Z")]
        );
    }

    #[test]
    fn croner_extensions() {
        let first = |text: &str, from: &str| cron(text).next_after(utc(from), Tz::UTC).unwrap();
        // The last day of the month (2024 is a leap year).
        assert_eq!(
            first("0 0 L * *", "2024-02-10T00:00:00Z"),
            utc("2024-02-29T00:00:00Z")
        );
        // The last Friday of January 2024.
        assert_eq!(
            first("0 0 * * 5L", "2024-01-01T00:00:00Z"),
            utc("2024-01-26T00:00:00Z")
        );
        // 2024-06-15 is a Saturday: the nearest weekday is Friday the 14th.
        assert_eq!(
            first("0 0 15W * *", "2024-06-01T00:00:00Z"),
            utc("2024-06-14T00:00:00Z")
        );
        // The first Monday of February 2024.
        assert_eq!(
            first("0 0 * * MON#1", "2024-01-02T00:00:00Z"),
            utc("2024-02-05T00:00:00Z")
        );
    }

    #[test]
    fn bad_expressions_name_the_field() {
        assert_eq!(
            "30 25 * * *".parse::<Cron>().unwrap_err().to_string(),
            "cron expression '30 25 * * *': hour '25': Number out of bounds (allowed: 0-23)"
        );
        for (text, needle) in [
            ("30 2 * *", "has 4 fields"),
            ("0 0 2 * * *", "has 6 fields"),
            ("", "has 0 fields"),
            ("61 2 * * *", "minute '61'"),
            ("0 24 * * *", "hour '24'"),
            ("30 25 * * *", "allowed: 0-23"),
            ("0 0 0 * *", "day of month '0'"),
            ("0 0 * 13 *", "month '13'"),
            ("0 0 * * 8", "day of week '8'"),
            ("*/0 * * * *", "minute '*/0': step cannot be zero"),
            ("x * * * *", "minute 'x'"),
            ("0 0 * * JAN", "'JAN' is not a weekday name"),
            ("0 0 * MON *", "'MON' is not a month name"),
            ("0 0 * JUNE *", "'JUNE' is not a month name"),
            ("0 0 * * 5-1", "day of week '5-1'"),
            ("@fortnightly", "'@fortnightly' is not a shorthand"),
        ] {
            let e = text.parse::<Cron>().unwrap_err();
            let shown = e.to_string();
            assert!(
                shown.to_lowercase().contains(&needle.to_lowercase()),
                "{text}: {shown}"
            );
            assert!(shown.contains(&format!("'{text}'")), "{shown}");
        }
    }
}
