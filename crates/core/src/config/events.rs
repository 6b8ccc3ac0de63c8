//! `[events]`: the audit trail of decisions (`<data_dir>/events`).

use serde::{Deserialize, Serialize};

use super::Problems;

/// The event log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Keep an audit record of every decision and its access message.
    pub enabled: bool,
    /// Records kept; past this the oldest are dropped and counted.
    pub max_events: u64,
    /// Records older than this many days are dropped; 0: no age limit.
    pub max_age_days: u32,
    /// Keep the face thumbnail (store.thumbnail_px, JPEG) with each record.
    pub keep_thumbnails: bool,
    /// LMDB map size of the log in MiB (address space, not memory).
    pub map_mib: usize,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_events: 100_000,
            max_age_days: 90,
            keep_thumbnails: true,
            map_mib: 1024,
        }
    }
}

impl EventsConfig {
    pub(super) fn validate(&self, p: &mut Problems) {
        if self.max_events == 0 {
            p.add(
                "events.max_events",
                "0".into(),
                "must be at least 1 (events.enabled = false turns the log off)",
            );
        }
        if self.map_mib < 8 {
            p.add(
                "events.map_mib",
                self.map_mib.to_string(),
                "must be at least 8",
            );
        }
    }
}
