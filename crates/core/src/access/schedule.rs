//! Named weekly schedules: when a door may open, in an explicit time zone, with holidays.
//!
//! A schedule is written in the configuration as day keys with time spans:
//!
//! ```toml
//! [access.schedules.office]
//! time_zone = "Europe/Berlin"
//! mon-fri = "07:00-19:00"
//! sat = "08:00-12:00, 13:00-15:00"
//! holidays = ["2026-12-25", "2026-12-26"]
//!
//! [access.schedules.night_shift]
//! time_zone = "Europe/Berlin"
//! mon-fri = "22:00-06:00"
//! ```
//!
//! Days are `mon` … `sun`, ranges (`mon-fri`, `fri-mon` wraps over the weekend) and lists of
//! both (`"mon-wed,fri"`: TOML wants a key with a comma quoted); a day may be named once. A
//! span belongs to the day it starts on: `22:00-06:00` on Friday runs
//! from Friday 22:00 to Saturday 06:00, and `00:00-24:00` is the whole day. On a holiday no
//! span starts; a span that started the evening before still runs to its end.
//!
//! Times are civil (wall-clock) times of the schedule's zone, so a schedule follows daylight
//! saving time: `07:00-19:00` opens at 07:00 local time in winter and in summer. On the night
//! clocks go forward the skipped hour does not exist and a span inside it never opens; on the
//! night they go back the repeated hour is inside a span twice, as on the wall clock.

use std::collections::BTreeMap;
use std::collections::BTreeSet;

use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use jiff::Timestamp;

/// Minutes in a day: the end of a span that runs to midnight (`24:00`).
const DAY_MINUTES: u16 = 24 * 60;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScheduleError {
    #[error("unknown time zone {0:?} (an IANA name such as \"Europe/Berlin\" or \"UTC\")")]
    TimeZone(String),
    #[error("{0:?} is not a day, a range of days (mon-fri) or a list of them (mon-wed,fri)")]
    Days(String),
    #[error("{day} is given twice (in {first:?} and {second:?})")]
    DayTwice {
        day: &'static str,
        first: String,
        second: String,
    },
    #[error("{0:?} is not a list of spans such as \"07:00-12:00, 13:00-19:00\"")]
    Spans(String),
    #[error("span {0:?} is empty (a span that crosses midnight is written 22:00-06:00)")]
    EmptySpan(String),
    #[error("holiday {0:?} is not a date such as 2026-12-25")]
    Holiday(String),
}

/// A time span of one day, in minutes after local midnight: `end` ≤ `start` means it runs
/// past midnight into the next day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: u16,
    pub end: u16,
}

impl Span {
    fn crosses_midnight(self) -> bool {
        self.end <= self.start
    }
}

/// A parsed weekly schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    time_zone: TimeZone,
    /// Monday first.
    days: [Vec<Span>; 7],
    holidays: BTreeSet<Date>,
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl Schedule {
    /// A schedule from its time zone, its day keys (`mon-fri` → `07:00-19:00`) and holidays.
    pub fn parse(
        time_zone: &str,
        days: &BTreeMap<String, String>,
        holidays: &[String],
    ) -> Result<Self, ScheduleError> {
        let time_zone =
            TimeZone::get(time_zone).map_err(|_| ScheduleError::TimeZone(time_zone.into()))?;
        let mut parsed: [Vec<Span>; 7] = Default::default();
        let mut given_by: [Option<&String>; 7] = [None; 7];
        for (key, value) in days {
            let spans = parse_spans(value)?;
            for day in parse_days(key)? {
                if let Some(first) = given_by[day] {
                    return Err(ScheduleError::DayTwice {
                        day: DAY_NAMES[day],
                        first: first.clone(),
                        second: key.clone(),
                    });
                }
                given_by[day] = Some(key);
                parsed[day] = spans.clone();
            }
        }
        let holidays = holidays
            .iter()
            .map(|h| {
                h.trim()
                    .parse::<Date>()
                    .map_err(|_| ScheduleError::Holiday(h.clone()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            time_zone,
            days: parsed,
            holidays,
        })
    }

    /// Whether the schedule is open at `now`.
    pub fn is_open(&self, now: Timestamp) -> bool {
        let local = now.to_zoned(self.time_zone.clone());
        let minute = local.hour() as u16 * 60 + local.minute() as u16;
        let today = local.date();
        let weekday = day_index(local.weekday());
        let open_today = !self.holidays.contains(&today)
            && self.days[weekday]
                .iter()
                .any(|s| minute >= s.start && (s.crosses_midnight() || minute < s.end));
        if open_today {
            return true;
        }
        // A span of yesterday that runs past midnight (it started on a working day even if
        // today is a holiday).
        let Ok(yesterday) = today.yesterday() else {
            return false;
        };
        !self.holidays.contains(&yesterday)
            && self.days[(weekday + 6) % 7]
                .iter()
                .any(|s| s.crosses_midnight() && minute < s.end)
    }
}

fn day_index(d: Weekday) -> usize {
    d.to_monday_zero_offset() as usize
}

/// `mon`, `mon-fri`, `fri-mon`, `mon-wed,fri` → day indices, Monday 0.
fn parse_days(key: &str) -> Result<Vec<usize>, ScheduleError> {
    let bad = || ScheduleError::Days(key.into());
    let name = |s: &str| {
        DAY_NAMES
            .iter()
            .position(|d| d.eq_ignore_ascii_case(s.trim()))
            .ok_or_else(bad)
    };
    let mut out = Vec::new();
    for part in key.split(',') {
        match part.split_once('-') {
            Some((from, to)) => {
                let (from, to) = (name(from)?, name(to)?);
                let mut d = from;
                loop {
                    out.push(d);
                    if d == to {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => out.push(name(part)?),
        }
    }
    Ok(out)
}

/// `"07:00-12:00, 13:00-19:00"` → spans. `24:00` is allowed as an end.
fn parse_spans(value: &str) -> Result<Vec<Span>, ScheduleError> {
    let bad = || ScheduleError::Spans(value.into());
    let mut out = Vec::new();
    for part in value.split(',') {
        let (from, to) = part.trim().split_once('-').ok_or_else(bad)?;
        let start = parse_minute(from).ok_or_else(bad)?;
        let end = parse_minute(to).ok_or_else(bad)?;
        if start == DAY_MINUTES {
            return Err(bad());
        }
        if start == end {
            return Err(ScheduleError::EmptySpan(part.trim().into()));
        }
        // 24:00 as an end is midnight of the next day; kept as 1440 so that it does not read
        // as a span crossing midnight.
        out.push(Span { start, end });
    }
    Ok(out)
}

/// `HH:MM` (00:00 … 24:00) → minutes after midnight.
fn parse_minute(s: &str) -> Option<u16> {
    let (h, m) = s.trim().split_once(':')?;
    let two_digits = |t: &str| t.len() == 2 && t.bytes().all(|b| b.is_ascii_digit());
    if !two_digits(h) || !two_digits(m) {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    let minute = h * 60 + m;
    (m < 60 && minute <= DAY_MINUTES).then_some(minute)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(
        zone: &str,
        days: &[(&str, &str)],
        holidays: &[&str],
    ) -> Result<Schedule, ScheduleError> {
        let days = days
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let holidays: Vec<String> = holidays.iter().map(|h| h.to_string()).collect();
        Schedule::parse(zone, &days, &holidays)
    }

    fn schedule(zone: &str, days: &[(&str, &str)], holidays: &[&str]) -> Schedule {
        parse(zone, days, holidays).unwrap()
    }

    /// The instant of a local wall-clock time (the earlier one when it occurs twice).
    fn at(zone: &str, local: &str) -> Timestamp {
        let dt: jiff::civil::DateTime = local.parse().unwrap();
        dt.to_zoned(TimeZone::get(zone).unwrap())
            .unwrap()
            .timestamp()
    }

    #[test]
    fn an_office_schedule_opens_on_working_days_within_its_hours() {
        let office = schedule("Europe/Berlin", &[("mon-fri", "07:00-19:00")], &[]);
        // 2026-12-02 is a Wednesday.
        assert!(office.is_open(at("Europe/Berlin", "2026-12-02T07:00")));
        assert!(office.is_open(at("Europe/Berlin", "2026-12-02T18:59")));
        assert!(
            !office.is_open(at("Europe/Berlin", "2026-12-02T19:00")),
            "the end is excluded"
        );
        assert!(!office.is_open(at("Europe/Berlin", "2026-12-02T06:59")));
        assert!(
            !office.is_open(at("Europe/Berlin", "2026-12-05T10:00")),
            "Saturday"
        );
        // The same instant is 06:30 in Berlin but 05:30 UTC: the zone decides.
        let utc = schedule("UTC", &[("mon-fri", "06:00-19:00")], &[]);
        assert!(!utc.is_open(at("Europe/Berlin", "2026-12-02T06:30")));
    }

    #[test]
    fn a_span_past_midnight_runs_into_the_next_day_and_belongs_to_its_first() {
        let night = schedule("Europe/Berlin", &[("fri", "22:00-06:00")], &[]);
        // Friday 2026-12-04 22:00 to Saturday 06:00.
        assert!(night.is_open(at("Europe/Berlin", "2026-12-04T23:30")));
        assert!(night.is_open(at("Europe/Berlin", "2026-12-05T00:00")));
        assert!(night.is_open(at("Europe/Berlin", "2026-12-05T05:59")));
        assert!(!night.is_open(at("Europe/Berlin", "2026-12-05T06:00")));
        // Thursday night is not Friday's span.
        assert!(!night.is_open(at("Europe/Berlin", "2026-12-04T03:00")));
        assert!(!night.is_open(at("Europe/Berlin", "2026-12-05T23:00")));
        // 24:00 is the end of the day, not a span past midnight.
        let whole = schedule("UTC", &[("sat", "00:00-24:00")], &[]);
        assert!(whole.is_open(at("UTC", "2026-12-05T23:59")));
        assert!(!whole.is_open(at("UTC", "2026-12-06T00:30")));
    }

    #[test]
    fn holidays_close_the_spans_that_start_on_them_only() {
        let night = schedule(
            "Europe/Berlin",
            &[("mon-sun", "22:00-06:00")],
            &["2026-12-25"],
        );
        // Christmas Eve's span runs into Christmas morning …
        assert!(night.is_open(at("Europe/Berlin", "2026-12-25T05:00")));
        // … but none starts on Christmas Day, whose night stays shut until the 26th's span.
        assert!(!night.is_open(at("Europe/Berlin", "2026-12-25T23:00")));
        assert!(!night.is_open(at("Europe/Berlin", "2026-12-26T05:00")));
        assert!(night.is_open(at("Europe/Berlin", "2026-12-26T22:00")));
    }

    #[test]
    fn the_schedule_follows_daylight_saving_time_on_the_wall_clock() {
        let office = schedule("Europe/Berlin", &[("mon-sun", "07:00-19:00")], &[]);
        // Summer time begins on Sunday 2026-03-29 (02:00 → 03:00): 07:00 local is 05:00 UTC
        // after, 06:00 UTC the day before.
        assert!(office.is_open("2026-03-29T05:00:00Z".parse().unwrap()));
        assert!(!office.is_open("2026-03-28T05:30:00Z".parse().unwrap()));
        assert!(office.is_open("2026-03-28T06:00:00Z".parse().unwrap()));
        // A night span over the change is an hour shorter, from 22:00 to 06:00 on the clock.
        let night = schedule("Europe/Berlin", &[("sat", "22:00-06:00")], &[]);
        assert!(night.is_open("2026-03-28T21:00:00Z".parse().unwrap()));
        assert!(night.is_open("2026-03-29T03:59:00Z".parse().unwrap()));
        assert!(!night.is_open("2026-03-29T04:00:00Z".parse().unwrap()));
        // A span inside the skipped hour never opens that night.
        let skipped = schedule("Europe/Berlin", &[("sun", "02:15-02:45")], &[]);
        for minute in 0..180 {
            let t: Timestamp = "2026-03-29T00:00:00Z".parse().unwrap();
            let t = t
                .checked_add(jiff::SignedDuration::from_mins(minute))
                .unwrap();
            assert!(!skipped.is_open(t), "{t}");
        }
        // Winter time begins on Sunday 2026-10-25 (03:00 → 02:00): 02:30 local happens twice,
        // at 00:30 and 01:30 UTC, and is inside the span both times.
        let repeated = schedule("Europe/Berlin", &[("sun", "02:00-03:00")], &[]);
        assert!(repeated.is_open("2026-10-25T00:30:00Z".parse().unwrap()));
        assert!(repeated.is_open("2026-10-25T01:30:00Z".parse().unwrap()));
        assert!(!repeated.is_open("2026-10-25T02:00:00Z".parse().unwrap()));
    }

    #[test]
    fn day_keys_accept_ranges_lists_and_wrapping_ranges() {
        assert_eq!(parse_days("mon-fri").unwrap(), vec![0, 1, 2, 3, 4]);
        assert_eq!(parse_days("fri-mon").unwrap(), vec![4, 5, 6, 0]);
        assert_eq!(parse_days("mon-wed,fri").unwrap(), vec![0, 1, 2, 4]);
        assert_eq!(parse_days("Sun").unwrap(), vec![6]);
        assert_eq!(parse_days("sun-sun").unwrap(), vec![6]);
    }

    #[test]
    fn bad_schedules_are_refused_with_what_is_wrong() {
        let parse = |zone: &str, days: &[(&str, &str)], holidays: &[&str]| {
            parse(zone, days, holidays).unwrap_err()
        };
        assert_eq!(
            parse("Mars/Olympus", &[], &[]),
            ScheduleError::TimeZone("Mars/Olympus".into())
        );
        assert_eq!(
            parse("UTC", &[("weekdays", "07:00-19:00")], &[]),
            ScheduleError::Days("weekdays".into())
        );
        assert!(matches!(
            parse(
                "UTC",
                &[("mon-fri", "07:00-19:00"), ("fri", "08:00-09:00")],
                &[]
            ),
            ScheduleError::DayTwice { day: "fri", .. }
        ));
        for spans in [
            "7-19",
            "07:00",
            "25:00-26:00",
            "07:60-08:00",
            "24:00-01:00",
            "+7:00-19:00",
            "",
        ] {
            assert_eq!(
                parse("UTC", &[("mon", spans)], &[]),
                ScheduleError::Spans(spans.into()),
                "{spans}"
            );
        }
        assert_eq!(
            parse("UTC", &[("mon", "08:00-08:00")], &[]),
            ScheduleError::EmptySpan("08:00-08:00".into())
        );
        assert_eq!(
            parse("UTC", &[], &["25.12.2026"]),
            ScheduleError::Holiday("25.12.2026".into())
        );
    }
}
