//! Door access: named weekly schedules ([`schedule`]), a person's access rules checked at a
//! door ([`rules`]), the signed access message ([`message`]), the appliance's signing key
//! ([`device_key`]) and what a door controller checks before it opens ([`guard`]). The rules are pure: the time of the match is always an argument, so they
//! are tested across midnight and daylight-saving changes without waiting for either.

pub mod device_key;
pub mod guard;
pub mod message;
pub mod rules;
pub mod schedule;
