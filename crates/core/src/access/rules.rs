//! Who may pass which door, and when: a person's access rules checked against a door, the
//! schedules and the time of the match. Pure: the time is an argument.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::schedule::Schedule;

/// A person's access rules, all optional: with none, the person may pass every door at any
/// time (subject to the door's default schedule).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonAccess {
    /// Not before this instant (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_from: Option<Timestamp>,
    /// Not from this instant on (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<Timestamp>,
    /// The doors the person may pass; absent: every door. An empty list allows none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doors: Option<Vec<String>>,
    /// A schedule of `[access.schedules]`, instead of the door's default one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Refused at every door.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub blocked: bool,
}

/// Why a recognised person is refused, as the access message's `reason` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Blocked,
    NotYetValid,
    Expired,
    DoorNotAllowed,
    OutsideSchedule,
    /// The person's or the door's schedule is not in the configuration (refused rather than
    /// let in at any time).
    UnknownSchedule,
    /// A rule depends on the date but the appliance's clock is not set (before
    /// [`EARLIEST_PLAUSIBLE`]: a board without a real-time clock before NTP synced).
    ClockNotSet,
}

/// Before this instant the appliance's clock cannot be right (it is earlier than this code):
/// a board without a battery-backed clock boots in 1970 or at its last shutdown until NTP sets
/// it. A rule that depends on the date refuses while the clock reads earlier.
pub const EARLIEST_PLAUSIBLE: Timestamp = Timestamp::constant(1_764_547_200, 0); // 2025-12-01T00:00:00Z

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Blocked => "blocked",
            Refusal::NotYetValid => "not_yet_valid",
            Refusal::Expired => "expired",
            Refusal::DoorNotAllowed => "door_not_allowed",
            Refusal::OutsideSchedule => "outside_schedule",
            Refusal::UnknownSchedule => "unknown_schedule",
            Refusal::ClockNotSet => "clock_not_set",
        }
    }
}

/// Whether `access` lets its person through `door` at `now`. `door_schedule` is the door's
/// default schedule, which applies when the person has none of their own; with neither, any
/// time is allowed. The first failing rule is reported, in this order: blocked, validity,
/// door, schedule; a validity period or a schedule refuses with [`Refusal::ClockNotSet`] while
/// `now` is before [`EARLIEST_PLAUSIBLE`].
pub fn check(
    access: &PersonAccess,
    door: &str,
    door_schedule: Option<&str>,
    schedules: &BTreeMap<String, Schedule>,
    now: Timestamp,
) -> Result<(), Refusal> {
    if access.blocked {
        return Err(Refusal::Blocked);
    }
    let clock_set = now >= EARLIEST_PLAUSIBLE;
    if !clock_set && (access.valid_from.is_some() || access.valid_until.is_some()) {
        return Err(Refusal::ClockNotSet);
    }
    if access.valid_from.is_some_and(|from| now < from) {
        return Err(Refusal::NotYetValid);
    }
    if access.valid_until.is_some_and(|until| now >= until) {
        return Err(Refusal::Expired);
    }
    if let Some(doors) = &access.doors {
        if !doors.iter().any(|d| d == door) {
            return Err(Refusal::DoorNotAllowed);
        }
    }
    match access.schedule.as_deref().or(door_schedule) {
        None => Ok(()),
        Some(name) => match schedules.get(name) {
            None => Err(Refusal::UnknownSchedule),
            Some(_) if !clock_set => Err(Refusal::ClockNotSet),
            Some(s) if s.is_open(now) => Ok(()),
            Some(_) => Err(Refusal::OutsideSchedule),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedules() -> BTreeMap<String, Schedule> {
        let office = [("mon-fri".to_string(), "07:00-19:00".to_string())].into();
        let weekend = [("sat-sun".to_string(), "10:00-16:00".to_string())].into();
        [
            (
                "office".to_string(),
                Schedule::parse("Europe/Berlin", &office, &[]).unwrap(),
            ),
            (
                "weekend".to_string(),
                Schedule::parse("Europe/Berlin", &weekend, &[]).unwrap(),
            ),
        ]
        .into()
    }

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    // Wednesday 2026-12-02, 10:00 in Berlin.
    const WEDNESDAY_10: &str = "2026-12-02T09:00:00Z";

    #[test]
    fn no_rules_let_a_person_through_any_door_at_any_time() {
        let open = PersonAccess::default();
        let s = schedules();
        assert_eq!(check(&open, "front", None, &s, t(WEDNESDAY_10)), Ok(()));
        assert_eq!(
            check(&open, "back", None, &s, t("2026-12-06T03:00:00Z")),
            Ok(())
        );
    }

    #[test]
    fn each_rule_refuses_with_its_own_reason() {
        let s = schedules();
        let now = t(WEDNESDAY_10);
        let refused = |access: PersonAccess, door_schedule: Option<&str>| {
            check(&access, "front", door_schedule, &s, now).unwrap_err()
        };
        assert_eq!(
            refused(
                PersonAccess {
                    blocked: true,
                    ..Default::default()
                },
                None
            ),
            Refusal::Blocked
        );
        assert_eq!(
            refused(
                PersonAccess {
                    valid_from: Some(t("2026-12-03T00:00:00Z")),
                    ..Default::default()
                },
                None
            ),
            Refusal::NotYetValid
        );
        assert_eq!(
            refused(
                PersonAccess {
                    valid_until: Some(now),
                    ..Default::default()
                },
                None
            ),
            Refusal::Expired,
            "valid_until itself is already too late"
        );
        assert_eq!(
            refused(
                PersonAccess {
                    doors: Some(vec!["back".into()]),
                    ..Default::default()
                },
                None
            ),
            Refusal::DoorNotAllowed
        );
        assert_eq!(
            refused(
                PersonAccess {
                    doors: Some(vec![]),
                    ..Default::default()
                },
                None
            ),
            Refusal::DoorNotAllowed,
            "an empty list allows no door"
        );
        assert_eq!(
            refused(
                PersonAccess {
                    schedule: Some("weekend".into()),
                    ..Default::default()
                },
                None
            ),
            Refusal::OutsideSchedule
        );
        assert_eq!(
            refused(
                PersonAccess {
                    schedule: Some("gone".into()),
                    ..Default::default()
                },
                None
            ),
            Refusal::UnknownSchedule
        );
        assert_eq!(
            refused(PersonAccess::default(), Some("weekend")),
            Refusal::OutsideSchedule,
            "the door's default schedule applies to a person without one"
        );
    }

    #[test]
    fn a_person_s_own_schedule_replaces_the_door_s_default() {
        let s = schedules();
        let weekender = PersonAccess {
            schedule: Some("weekend".into()),
            ..Default::default()
        };
        // Saturday 2026-12-05 11:00 in Berlin: the office door's default would refuse.
        let saturday = t("2026-12-05T10:00:00Z");
        assert_eq!(
            check(&weekender, "front", Some("office"), &s, saturday),
            Ok(())
        );
        assert_eq!(
            check(
                &PersonAccess::default(),
                "front",
                Some("office"),
                &s,
                saturday
            ),
            Err(Refusal::OutsideSchedule)
        );
    }

    #[test]
    fn the_first_failing_rule_is_the_reason() {
        let s = schedules();
        let everything_wrong = PersonAccess {
            valid_from: Some(t("2030-01-01T00:00:00Z")),
            doors: Some(vec![]),
            schedule: Some("weekend".into()),
            blocked: true,
            ..Default::default()
        };
        let now = t(WEDNESDAY_10);
        assert_eq!(
            check(&everything_wrong, "front", None, &s, now),
            Err(Refusal::Blocked)
        );
        let not_blocked = PersonAccess {
            blocked: false,
            ..everything_wrong
        };
        assert_eq!(
            check(&not_blocked, "front", None, &s, now),
            Err(Refusal::NotYetValid)
        );
        let valid = PersonAccess {
            valid_from: None,
            ..not_blocked
        };
        assert_eq!(
            check(&valid, "front", None, &s, now),
            Err(Refusal::DoorNotAllowed)
        );
        let at_the_door = PersonAccess {
            doors: Some(vec!["front".into()]),
            ..valid
        };
        assert_eq!(
            check(&at_the_door, "front", None, &s, now),
            Err(Refusal::OutsideSchedule)
        );
    }

    #[test]
    fn the_rules_allow_from_valid_from_on_and_at_a_listed_door() {
        let s = schedules();
        let now = t(WEDNESDAY_10);
        let access = PersonAccess {
            valid_from: Some(now),
            valid_until: Some(t("2026-12-02T09:00:01Z")),
            doors: Some(vec!["back".into(), "front".into()]),
            schedule: Some("office".into()),
            blocked: false,
        };
        assert_eq!(check(&access, "front", None, &s, now), Ok(()));
    }

    #[test]
    fn rules_that_depend_on_the_date_refuse_while_the_clock_is_not_set() {
        let s = schedules();
        // A board without a real-time clock, booted on a Thursday in 1970 at 10:00 UTC.
        let unset = t("1970-01-01T10:00:00Z");
        let refused =
            |access: &PersonAccess, door_schedule| check(access, "front", door_schedule, &s, unset);
        assert_eq!(refused(&PersonAccess::default(), None), Ok(()));
        assert_eq!(
            refused(&PersonAccess::default(), Some("office")),
            Err(Refusal::ClockNotSet),
            "1970 would pass for a Thursday at 11:00 in Berlin"
        );
        let until = PersonAccess {
            valid_until: Some(t("2027-01-01T00:00:00Z")),
            ..Default::default()
        };
        assert_eq!(refused(&until, None), Err(Refusal::ClockNotSet));
        let blocked = PersonAccess {
            blocked: true,
            ..until.clone()
        };
        assert_eq!(refused(&blocked, None), Err(Refusal::Blocked));
        let elsewhere = PersonAccess {
            doors: Some(vec!["back".into()]),
            ..Default::default()
        };
        assert_eq!(refused(&elsewhere, None), Err(Refusal::DoorNotAllowed));
        assert_eq!(EARLIEST_PLAUSIBLE.to_string(), "2025-12-01T00:00:00Z");
    }

    #[test]
    fn access_rules_read_and_write_as_the_api_shows_them() {
        let json = r#"{"valid_from":"2026-01-01T00:00:00Z","doors":["front"],"schedule":"office"}"#;
        let access: PersonAccess = serde_json::from_str(json).unwrap();
        assert_eq!(access.doors.as_deref(), Some(&["front".to_string()][..]));
        assert!(!access.blocked);
        assert_eq!(serde_json::to_string(&access).unwrap(), json);
        assert!(serde_json::from_str::<PersonAccess>(r#"{"door":["front"]}"#).is_err());
    }
}
