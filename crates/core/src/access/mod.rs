//! Door access: named weekly schedules ([`schedule`]) and a person's access rules checked at a
//! door ([`rules`]). Pure: the time of the match is always an argument, so the rules are
//! tested across midnight and daylight-saving changes without waiting for either.

pub mod rules;
pub mod schedule;
