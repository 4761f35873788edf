//! A night is one UTC calendar day: the unit of loading, training and publishing.
//!
//! Night `D` uses exactly the events whose event day (UTC) is on or before `D`, so a night rerun
//! later, after newer days were loaded, sees the same events.

use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, Days, NaiveDate};

use crate::error::Error;

/// A UTC calendar day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Night(NaiveDate);

impl Night {
    /// The night of a calendar date.
    pub fn new(date: NaiveDate) -> Self {
        Night(date)
    }

    /// Builds a night from year, month and day, if it is a real date.
    pub fn from_ymd(year: i32, month: u32, day: u32) -> Option<Self> {
        NaiveDate::from_ymd_opt(year, month, day).map(Night)
    }

    /// The UTC day that contains a Unix timestamp in seconds.
    pub fn of_unix_seconds(secs: i64) -> Option<Self> {
        chrono::DateTime::from_timestamp(secs, 0).map(|t| Night(t.date_naive()))
    }

    /// The calendar date.
    pub fn date(self) -> NaiveDate {
        self.0
    }

    /// Days since 1970-01-01, as Arrow's `Date32` stores it.
    pub fn days_since_epoch(self) -> i32 {
        // Dates fit easily: chrono's range is far inside i32 days.
        (self.0 - NaiveDate::default()).num_days() as i32
    }

    /// The night from Arrow's `Date32` value.
    pub fn from_days_since_epoch(days: i32) -> Option<Self> {
        NaiveDate::default()
            .checked_add_signed(chrono::Duration::days(i64::from(days)))
            .map(Night)
    }

    /// The first second of this day, in Unix seconds.
    pub fn start_unix_seconds(self) -> i64 {
        self.0
            .and_hms_opt(0, 0, 0)
            .map_or(0, |t| t.and_utc().timestamp())
    }

    /// The following day.
    pub fn next(self) -> Self {
        self.plus_days(1)
    }

    /// The day `n` days later (saturating at the end of the calendar).
    pub fn plus_days(self, n: u64) -> Self {
        Night(self.0.checked_add_days(Days::new(n)).unwrap_or(self.0))
    }

    /// The day `n` days earlier (saturating at the start of the calendar).
    /// 0001-01-01: the start of a window that holds the whole history.
    pub fn beginning() -> Self {
        Night(NaiveDate::from_ymd_opt(1, 1, 1).expect("0001-01-01 is a calendar date"))
    }

    pub fn minus_days(self, n: u64) -> Self {
        Night(self.0.checked_sub_days(Days::new(n)).unwrap_or(self.0))
    }

    /// `YYYY/MM/DD`, the folder of this night in every dated lake prefix.
    pub fn path_segment(self) -> String {
        format!(
            "{:04}/{:02}/{:02}",
            self.0.year(),
            self.0.month(),
            self.0.day()
        )
    }

    /// Parses the `YYYY/MM/DD` segments of a lake path.
    pub fn from_path_segments(year: &str, month: &str, day: &str) -> Option<Self> {
        if year.len() != 4 || month.len() != 2 || day.len() != 2 {
            return None;
        }
        Night::from_ymd(year.parse().ok()?, month.parse().ok()?, day.parse().ok()?)
    }

    /// Every night from `self` to `last`, both included.
    pub fn through(self, last: Night) -> impl Iterator<Item = Night> {
        let mut next = Some(self);
        std::iter::from_fn(move || {
            let current = next?;
            if current > last {
                return None;
            }
            next = (current < last).then(|| current.next());
            Some(current)
        })
    }
}

impl fmt::Display for Night {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%Y-%m-%d"))
    }
}

impl FromStr for Night {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
            .map(Night)
            .map_err(|_| Error::Config(format!("'{s}' is not a date: write it as YYYY-MM-DD")))
    }
}

impl serde::Serialize for Night {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Night {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_formats_and_walks_days() {
        let n: Night = "2024-02-28".parse().unwrap();
        assert_eq!(n.path_segment(), "2024/02/28");
        assert_eq!(n.next().to_string(), "2024-02-29");
        assert_eq!(n.plus_days(2).to_string(), "2024-03-01");
        let all: Vec<_> = n.through(n.plus_days(2)).map(|d| d.to_string()).collect();
        assert_eq!(all, ["2024-02-28", "2024-02-29", "2024-03-01"]);
        assert_eq!(n.through(n.minus_days(1)).count(), 0);
        assert!("2024-13-01".parse::<Night>().is_err());
        assert_eq!(Night::from_path_segments("2024", "02", "28"), Some(n));
        assert_eq!(Night::from_path_segments("2024", "2", "28"), None);
    }

    #[test]
    fn unix_seconds_and_epoch_days_agree() {
        let n = Night::of_unix_seconds(881_250_949).unwrap();
        assert_eq!(n.to_string(), "1997-12-04");
        assert_eq!(Night::from_days_since_epoch(n.days_since_epoch()), Some(n));
        assert_eq!(Night::of_unix_seconds(n.start_unix_seconds()), Some(n));
        assert_eq!(
            Night::of_unix_seconds(n.start_unix_seconds() - 1),
            Some(n.minus_days(1))
        );
    }
}
