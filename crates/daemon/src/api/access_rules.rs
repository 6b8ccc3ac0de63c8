//! The `access` extension field of a person [facegate]: who may pass which door, when.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ApiError;
use facegate_core::access::rules::PersonAccess;
use facegate_core::config::{is_topic_segment, AccessConfig};

/// Most doors one person's rules may name.
pub const MAX_DOORS: usize = 64;

/// A person's access rules; every field is optional. With none, the person may pass every
/// door at any time its default schedule allows.
#[derive(Debug, Clone, Default, Serialize, ToSchema, PartialEq)]
pub struct AccessRules {
    /// Not before this instant (RFC 3339 with an offset, e.g. `2026-12-01T08:00:00+01:00`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_from: Option<String>,
    /// Not from this instant on (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<String>,
    /// Doors the person may pass (the cameras' `door` names); absent: every door; `[]`: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub doors: Option<Vec<String>>,
    /// A schedule of `[access.schedules]`, instead of the door's default one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Refused at every door (the event still names the person).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked: Option<bool>,
}

/// Only from a JSON object: serde's derived `Deserialize` would also take an array (`[]` as
/// "no rules"), which is not what a client sending an array means.
impl<'de> Deserialize<'de> for AccessRules {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Fields {
            #[serde(default)]
            valid_from: Option<String>,
            #[serde(default)]
            valid_until: Option<String>,
            #[serde(default)]
            doors: Option<Vec<String>>,
            #[serde(default)]
            schedule: Option<String>,
            #[serde(default)]
            blocked: Option<bool>,
        }
        struct Object;
        impl<'de> serde::de::Visitor<'de> for Object {
            type Value = AccessRules;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of access rules")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<AccessRules, A::Error> {
                let f = Fields::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(AccessRules {
                    valid_from: f.valid_from,
                    valid_until: f.valid_until,
                    doors: f.doors,
                    schedule: f.schedule,
                    blocked: f.blocked,
                })
            }
        }
        d.deserialize_map(Object)
    }
}

fn invalid(field: &str, message: String) -> ApiError {
    ApiError::invalid(message).with_metadata("field", format!("access.{field}"))
}

impl AccessRules {
    /// The rules as stored, or `ERR_INVALID_REQUEST` naming the field: a time that is not
    /// RFC 3339, `valid_until` not after `valid_from`, a bad door name or a schedule the
    /// configuration does not have.
    pub fn checked(self, config: &AccessConfig) -> Result<PersonAccess, ApiError> {
        let instant = |field: &str, text: Option<String>| {
            text.map(|t| {
                t.parse::<jiff::Timestamp>().map_err(|_| {
                    invalid(
                        field,
                        format!(
                            "access.{field} {t:?} is not an RFC 3339 time such as \
                             2026-12-01T08:00:00Z"
                        ),
                    )
                })
            })
            .transpose()
        };
        let valid_from = instant("valid_from", self.valid_from)?;
        let valid_until = instant("valid_until", self.valid_until)?;
        if let (Some(from), Some(until)) = (valid_from, valid_until) {
            if until <= from {
                return Err(invalid(
                    "valid_until",
                    "access.valid_until must be after access.valid_from".into(),
                ));
            }
        }
        if let Some(doors) = &self.doors {
            if doors.len() > MAX_DOORS {
                return Err(invalid(
                    "doors",
                    format!("access.doors may name at most {MAX_DOORS} doors"),
                ));
            }
            if let Some(d) = doors.iter().find(|d| !is_topic_segment(d)) {
                return Err(invalid(
                    "doors",
                    format!(
                        "access.doors: {d:?} is not a door name (1 to 64 letters, digits, \
                         '-' or '_', as in cameras.door)"
                    ),
                ));
            }
        }
        if let Some(name) = &self.schedule {
            if !config.schedules.contains_key(name) {
                let known: Vec<&str> = config.schedules.keys().map(String::as_str).collect();
                return Err(invalid(
                    "schedule",
                    format!(
                        "access.schedule {name:?} is not a schedule of the configuration \
                         ([access.schedules]: {})",
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ),
                ));
            }
        }
        Ok(PersonAccess {
            valid_from,
            valid_until,
            doors: self.doors,
            schedule: self.schedule,
            blocked: self.blocked.unwrap_or(false),
        })
    }

    /// The stored rules as the API shows them.
    pub fn shown(access: &PersonAccess) -> Self {
        Self {
            valid_from: access.valid_from.map(|t| t.to_string()),
            valid_until: access.valid_until.map(|t| t.to_string()),
            doors: access.doors.clone(),
            schedule: access.schedule.clone(),
            blocked: access.blocked.then_some(true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> AccessConfig {
        let office = facegate_core::config::ScheduleConfig {
            time_zone: "UTC".into(),
            holidays: vec![],
            days: [("mon-fri".to_string(), "07:00-19:00".to_string())].into(),
        };
        AccessConfig {
            schedules: [("office".to_string(), office)].into(),
            ..Default::default()
        }
    }

    #[test]
    fn rules_are_checked_and_shown_as_they_were_given() {
        let rules = AccessRules {
            valid_from: Some("2026-12-01T08:00:00+01:00".into()),
            valid_until: Some("2027-01-01T00:00:00Z".into()),
            doors: Some(vec!["main".into()]),
            schedule: Some("office".into()),
            blocked: Some(true),
        };
        let stored = rules.checked(&config()).unwrap();
        assert_eq!(
            stored.valid_from,
            Some("2026-12-01T07:00:00Z".parse().unwrap())
        );
        let shown = AccessRules::shown(&stored);
        assert_eq!(shown.valid_from.as_deref(), Some("2026-12-01T07:00:00Z"));
        assert_eq!(shown.blocked, Some(true));
        assert_eq!(
            AccessRules::shown(&PersonAccess::default()),
            AccessRules::default()
        );
    }

    #[test]
    fn rules_come_only_as_an_object_with_known_fields() {
        let parse = |v: serde_json::Value| serde_json::from_value::<AccessRules>(v);
        assert_eq!(
            parse(serde_json::json!({})).unwrap(),
            AccessRules::default()
        );
        assert_eq!(
            parse(serde_json::json!({"blocked": true})).unwrap().blocked,
            Some(true)
        );
        for bad in [
            serde_json::json!([]),
            serde_json::json!([true]),
            serde_json::json!({"door": ["main"]}),
            serde_json::json!({"doors": "main"}),
        ] {
            assert!(parse(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bad_time_an_empty_period_a_bad_door_or_an_unknown_schedule_is_refused_by_field() {
        let field = |r: AccessRules| {
            r.checked(&config()).unwrap_err().metadata.unwrap()["field"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        let r = |f: fn(&mut AccessRules)| {
            let mut r = AccessRules::default();
            f(&mut r);
            r
        };
        assert_eq!(
            field(r(|r| r.valid_from = Some("yesterday".into()))),
            "access.valid_from"
        );
        assert_eq!(
            field(r(|r| {
                r.valid_from = Some("2027-01-01T00:00:00Z".into());
                r.valid_until = Some("2026-01-01T00:00:00Z".into());
            })),
            "access.valid_until"
        );
        assert_eq!(
            field(r(|r| r.doors = Some(vec!["a/b".into()]))),
            "access.doors"
        );
        assert_eq!(
            field(r(|r| r.schedule = Some("night".into()))),
            "access.schedule"
        );
    }
}
