//! `[strangers]`: persistent anonymous identities for faces decided `unknown`
//! (`<data_dir>/strangers`).

use serde::{Deserialize, Serialize};

use super::Problems;

/// Stranger clustering.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StrangersConfig {
    /// Give each face decided `unknown` a persistent id `unknown-<n>`, shared by the sightings
    /// of the same face.
    pub enabled: bool,
    /// Strangers kept; past this the one seen longest ago is forgotten.
    pub max_count: u64,
    /// A stranger not seen for this many days is forgotten; 0: no age limit.
    pub max_age_days: u32,
    /// Best faces (template and thumbnail) kept per stranger: what it is matched against and
    /// what `POST /unknowns/{id}/enrol` enrols.
    pub faces_kept: usize,
    /// LMDB map size in MiB (address space, not memory).
    pub map_mib: usize,
}

impl Default for StrangersConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_count: 1000,
            max_age_days: 30,
            faces_kept: 5,
            map_mib: 256,
        }
    }
}

/// Most faces a stranger may keep.
pub const MAX_FACES_KEPT: usize = 10;

impl StrangersConfig {
    pub(super) fn validate(&self, p: &mut Problems) {
        if self.max_count == 0 {
            p.add(
                "strangers.max_count",
                "0".into(),
                "must be at least 1 (strangers.enabled = false turns clustering off)",
            );
        }
        if !(1..=MAX_FACES_KEPT).contains(&self.faces_kept) {
            p.add(
                "strangers.faces_kept",
                self.faces_kept.to_string(),
                "must be 1 to 10",
            );
        }
        // A kept face takes up to ~16 KiB in the store (a 512-float template as JSON and a
        // base64 thumbnail): the map must hold them all, or sightings would start failing.
        let needed_mib = self
            .max_count
            .saturating_mul(self.faces_kept as u64)
            .saturating_mul(16)
            / 1024;
        if self.map_mib >= 8 && (self.map_mib as u64) < needed_mib.saturating_mul(2) {
            p.add(
                "strangers.map_mib",
                self.map_mib.to_string(),
                "too small for strangers.max_count × faces_kept faces (~16 KiB each, twice that \
                 for LMDB's copy-on-write): raise it or lower max_count",
            );
        }
        if self.map_mib < 8 {
            p.add(
                "strangers.map_mib",
                self.map_mib.to_string(),
                "must be at least 8",
            );
        }
    }
}
