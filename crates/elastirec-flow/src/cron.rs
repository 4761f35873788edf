//! Five-field cron expressions (`minute hour day-of-month month day-of-week`) evaluated in a
//! time zone.
//!
//! Fields take `*`, numbers, ranges `a-b`, steps `*/n` and `a-b/n`, and comma lists. As in
//! Vixie cron, when both day fields are restricted a day matches if either does; day-of-week 0
//! and 7 are Sunday. Local times that a daylight-saving change skips do not fire; a time that
//! happens twice fires once, at its first occurrence.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// A parsed cron expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    text: String,
    minutes: [bool; 60],
    hours: [bool; 24],
    days: [bool; 32],
    months: [bool; 13],
    weekdays: [bool; 7],
    days_restricted: bool,
    weekdays_restricted: bool,
}

/// A cron expression that does not parse; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cron expression '{text}': {reason}")]
pub struct CronError {
    text: String,
    reason: String,
}

fn parse_field<const N: usize>(
    field: &str,
    name: &str,
    min: usize,
    max: usize,
) -> Result<([bool; N], bool), String> {
    let mut set = [false; N];
    let restricted = field != "*";
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: usize = s
                    .parse()
                    .map_err(|_| format!("{name}: step '{s}' is not a number"))?;
                if step == 0 {
                    return Err(format!("{name}: a step must be at least 1"));
                }
                (r, step)
            }
            None => (part, 1),
        };
        let (lo, hi) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            let a: usize = a
                .parse()
                .map_err(|_| format!("{name}: '{a}' is not a number"))?;
            let b: usize = b
                .parse()
                .map_err(|_| format!("{name}: '{b}' is not a number"))?;
            (a, b)
        } else {
            let v: usize = range
                .parse()
                .map_err(|_| format!("{name}: '{range}' is not a number"))?;
            (v, if step > 1 { max } else { v })
        };
        if lo < min || hi > max || lo > hi {
            return Err(format!("{name}: {range} is outside {min}-{max}"));
        }
        for v in (lo..=hi).step_by(step) {
            set[v % N] = true;
        }
    }
    Ok((set, restricted))
}

impl FromStr for Cron {
    type Err = CronError;

    fn from_str(text: &str) -> Result<Cron, CronError> {
        let err = |reason: String| CronError {
            text: text.to_string(),
            reason,
        };
        let fields: Vec<&str> = text.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(err(format!(
                "has {} fields; write five: minute hour day-of-month month day-of-week \
                 (e.g. \"30 2 * * *\")",
                fields.len()
            )));
        }
        let (minutes, _) = parse_field::<60>(fields[0], "minute", 0, 59).map_err(err)?;
        let (hours, _) = parse_field::<24>(fields[1], "hour", 0, 23).map_err(err)?;
        let (days, days_restricted) =
            parse_field::<32>(fields[2], "day of month", 1, 31).map_err(err)?;
        let (months, _) = parse_field::<13>(fields[3], "month", 1, 12).map_err(err)?;
        // 0-7 with 7 folded onto 0 (Sunday) by the modulo.
        let (weekdays, weekdays_restricted) =
            parse_field::<7>(fields[4], "day of week", 0, 7).map_err(err)?;
        Ok(Cron {
            text: text.to_string(),
            minutes,
            hours,
            days,
            months,
            weekdays,
            days_restricted,
            weekdays_restricted,
        })
    }
}

impl fmt::Display for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Cron {
    fn day_matches(&self, date: NaiveDate) -> bool {
        if !self.months[date.month() as usize] {
            return false;
        }
        let dom = self.days[date.day() as usize];
        let dow = self.weekdays[date.weekday().num_days_from_sunday() as usize];
        match (self.days_restricted, self.weekdays_restricted) {
            (true, true) => dom || dow,
            (true, false) => dom,
            (false, true) => dow,
            (false, false) => true,
        }
    }

    /// The first firing strictly after `after`, in time zone `tz`; `None` if there is none
    /// within eight years (such as `0 0 30 2 *`).
    pub fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&tz).naive_local();
        let mut date = local.date();
        let start_minute = local.hour() * 60 + local.minute() + 1;
        for day in 0..(366 * 8) {
            if self.day_matches(date) {
                let from = if day == 0 { start_minute } else { 0 };
                for minute_of_day in from..24 * 60 {
                    let (h, m) = (minute_of_day / 60, minute_of_day % 60);
                    if !self.hours[h as usize] || !self.minutes[m as usize] {
                        continue;
                    }
                    let naive = date.and_hms_opt(h, m, 0)?;
                    if let Some(t) = tz.from_local_datetime(&naive).earliest() {
                        let t = t.with_timezone(&Utc);
                        if t > after {
                            return Some(t);
                        }
                    }
                }
            }
            date = date.checked_add_signed(Duration::days(1))?;
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

    #[test]
    fn daily_time_in_utc_and_in_a_zone() {
        let c: Cron = "30 2 * * *".parse().unwrap();
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
    fn lists_ranges_steps_and_weekdays() {
        let c: Cron = "*/15 9-17/4 * * 1-5".parse().unwrap();
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
        let sundays: Cron = "0 0 * * 7".parse().unwrap();
        assert_eq!(
            sundays.next_after(utc("2024-01-01T00:00:00Z"), Tz::UTC),
            Some(utc("2024-01-07T00:00:00Z"))
        );
        let never: Cron = "0 0 30 2 *".parse().unwrap();
        assert_eq!(never.next_after(utc("2024-01-01T00:00:00Z"), Tz::UTC), None);
    }

    #[test]
    fn bad_expressions_name_the_field() {
        for (text, needle) in [
            ("30 2 * *", "fields"),
            ("61 2 * * *", "minute"),
            ("0 24 * * *", "hour"),
            ("0 0 0 * *", "day of month"),
            ("0 0 * 13 *", "month"),
            ("0 0 * * 8", "day of week"),
            ("*/0 * * * *", "step"),
            ("x * * * *", "minute"),
        ] {
            let e = text.parse::<Cron>().unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
