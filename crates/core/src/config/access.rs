//! `[access]`: access messages to door controllers, named weekly schedules and each door's
//! default schedule.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Problems;
use crate::access::schedule::{Schedule, ScheduleError};

/// Door access.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AccessConfig {
    /// Seconds an access message is good for after the capture of the deciding frame: its
    /// `expires_at`. A controller refuses it later (delayed by an outage, or replayed).
    pub grant_ttl_s: f64,
    /// Time zone of the schedules that name none (IANA, e.g. "Europe/Berlin"). Empty: each
    /// schedule must name its own.
    pub time_zone: String,
    /// Named weekly schedules (`[access.schedules.<name>]`).
    pub schedules: BTreeMap<String, ScheduleConfig>,
    /// Per door (`[access.doors.<door>]`), its default schedule.
    pub doors: BTreeMap<String, DoorAccessConfig>,
}

/// One named schedule as written: day keys with spans, a time zone and holidays.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ScheduleConfig {
    /// IANA time zone of the spans; empty: `access.time_zone`.
    #[serde(default)]
    pub time_zone: String,
    /// Dates (YYYY-MM-DD) on which no span starts.
    #[serde(default)]
    pub holidays: Vec<String>,
    /// `mon-fri = "07:00-19:00"` and the like (crate::access::schedule).
    #[serde(flatten)]
    pub days: BTreeMap<String, String>,
}

/// One door's access settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DoorAccessConfig {
    /// The schedule that applies to persons without one of their own; empty: any time.
    pub schedule: String,
}

impl Default for AccessConfig {
    fn default() -> Self {
        Self {
            grant_ttl_s: 3.0,
            time_zone: String::new(),
            schedules: BTreeMap::new(),
            doors: BTreeMap::new(),
        }
    }
}

/// Longest `grant_ttl_s`: a grant is for the person at the door now.
const MAX_GRANT_TTL_S: f64 = 60.0;

impl AccessConfig {
    /// The parsed schedules by name.
    pub fn schedules(&self) -> Result<BTreeMap<String, Schedule>, (String, ScheduleError)> {
        self.schedules
            .iter()
            .map(|(name, s)| {
                let zone = if s.time_zone.is_empty() {
                    &self.time_zone
                } else {
                    &s.time_zone
                };
                Schedule::parse(zone, &s.days, &s.holidays)
                    .map(|parsed| (name.clone(), parsed))
                    .map_err(|e| (name.clone(), e))
            })
            .collect()
    }

    /// The default schedule of `door`, if it has one.
    pub fn door_schedule(&self, door: &str) -> Option<&str> {
        self.doors
            .get(door)
            .map(|d| d.schedule.as_str())
            .filter(|s| !s.is_empty())
    }

    /// Add every problem of this section to `p`.
    pub(super) fn validate(&self, p: &mut Problems) {
        if !(self.grant_ttl_s > 0.0 && self.grant_ttl_s <= MAX_GRANT_TTL_S) {
            p.add(
                "access.grant_ttl_s",
                self.grant_ttl_s.to_string(),
                "must be above 0 and at most 60 seconds",
            );
        }
        for (name, s) in &self.schedules {
            if s.time_zone.is_empty() && self.time_zone.is_empty() {
                p.add(
                    "access.schedules",
                    name.clone(),
                    "needs a time_zone (or set access.time_zone): a schedule's hours are \
                     local hours of an explicit zone",
                );
            }
        }
        if let Err((name, e)) = self.schedules() {
            if !matches!(e, ScheduleError::TimeZone(ref z) if z.is_empty()) {
                p.add(
                    "access.schedules",
                    format!("{name}: {e}"),
                    "must be a weekly schedule (docs/access.md, \"Schedules\")",
                );
            }
        }
        for (door, d) in &self.doors {
            if !d.schedule.is_empty() && !self.schedules.contains_key(&d.schedule) {
                p.add(
                    "access.doors",
                    format!("{door}: schedule {:?}", d.schedule),
                    "must name a schedule of [access.schedules]",
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> AccessConfig {
        toml::from_str(text).unwrap()
    }

    fn problems(c: &AccessConfig) -> Vec<String> {
        let mut p = Problems::default();
        c.validate(&mut p);
        p.0.iter()
            .map(|p| format!("{} = {}", p.key, p.value))
            .collect()
    }

    #[test]
    fn schedules_and_door_defaults_read_from_toml() {
        let c = parse(
            r#"
            time_zone = "Europe/Berlin"
            [schedules.office]
            mon-fri = "07:00-19:00"
            holidays = ["2026-12-25"]
            [schedules.night]
            time_zone = "UTC"
            "sat-sun" = "22:00-06:00"
            [doors.main]
            schedule = "office"
            "#,
        );
        assert!(problems(&c).is_empty(), "{:?}", problems(&c));
        let s = c.schedules().unwrap();
        assert_eq!(s.len(), 2);
        // Thursday 2026-12-03 12:00 Berlin is open, Christmas is a holiday.
        assert!(s["office"].is_open("2026-12-03T11:00:00Z".parse().unwrap()));
        assert!(!s["office"].is_open("2026-12-25T11:00:00Z".parse().unwrap()));
        assert_eq!(c.door_schedule("main"), Some("office"));
        assert_eq!(c.door_schedule("back"), None);
    }

    #[test]
    fn a_schedule_without_a_time_zone_or_with_a_bad_span_is_refused_with_its_name() {
        let c = parse("[schedules.office]\nmon-fri = \"07:00-19:00\"\n");
        assert_eq!(problems(&c), vec!["access.schedules = office"]);
        let c = parse("time_zone = \"UTC\"\n[schedules.office]\nmon-fry = \"07:00-19:00\"\n");
        let p = problems(&c);
        assert_eq!(p.len(), 1);
        assert!(p[0].starts_with("access.schedules = office: "), "{p:?}");
        let c = parse("time_zone = \"Mars/Olympus\"\n[schedules.x]\nmon = \"07:00-08:00\"\n");
        assert_eq!(problems(&c).len(), 1);
    }

    #[test]
    fn a_door_naming_a_missing_schedule_and_a_bad_ttl_are_refused() {
        let mut c = parse("grant_ttl_s = 0\n[doors.main]\nschedule = \"office\"\n");
        assert_eq!(
            problems(&c),
            vec![
                "access.grant_ttl_s = 0",
                "access.doors = main: schedule \"office\""
            ]
        );
        c.grant_ttl_s = 61.0;
        assert_eq!(problems(&c).len(), 2);
    }
}
