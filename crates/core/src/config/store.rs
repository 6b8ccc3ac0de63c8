//! `[store]`: the LMDB gallery.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Problems;

/// The LMDB gallery.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Folder of the LMDB store. Empty: `$STATE_DIRECTORY` (set by systemd's
    /// `StateDirectory=`, e.g. /var/lib/facegate), else `./data`.
    #[serde(with = "super::optional_path")]
    pub data_dir: Option<PathBuf>,
    /// Initial LMDB map size in MiB; the map doubles whenever it fills.
    pub map_size_mib: usize,
    /// The map never grows past this many MiB: a write that needs more fails with
    /// `ERR_DATABASE_ERROR` ("store full") instead of taking the disk or address space.
    pub max_map_mib: usize,
    /// Side in pixels of stored face thumbnails (aligned crops).
    pub thumbnail_px: u32,
    /// JPEG quality of thumbnails.
    pub thumbnail_quality: u8,
    /// Faces (templates) one person may have: a person is matched by the best of them, so
    /// photos from above, with glasses or in winter clothes each add a way to be recognised.
    pub max_faces_per_person: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            data_dir: None,
            map_size_mib: 256,
            max_map_mib: 16384,
            thumbnail_px: 160,
            thumbnail_quality: 85,
            max_faces_per_person: 5,
        }
    }
}

impl StoreConfig {
    /// The data directory this configuration means.
    pub fn resolved_data_dir(&self) -> PathBuf {
        if let Some(dir) = &self.data_dir {
            return dir.clone();
        }
        match std::env::var_os("STATE_DIRECTORY") {
            // systemd may pass several, colon-separated; the first is ours.
            Some(v) if !v.is_empty() => {
                PathBuf::from(v.to_string_lossy().split(':').next().unwrap_or("data"))
            }
            _ => PathBuf::from("data"),
        }
    }
}

impl StoreConfig {
    /// Add every problem of this section to `p`.
    pub(super) fn validate(&self, p: &mut Problems) {
        if self.max_map_mib < self.map_size_mib {
            p.add(
                "store.max_map_mib",
                self.max_map_mib.to_string(),
                "must be at least store.map_size_mib",
            );
        }
        if !(32..=1024).contains(&self.thumbnail_px) {
            p.add(
                "store.thumbnail_px",
                self.thumbnail_px.to_string(),
                "must be between 32 and 1024",
            );
        }
        if !(1..=100).contains(&self.thumbnail_quality) {
            p.add(
                "store.thumbnail_quality",
                self.thumbnail_quality.to_string(),
                "must be between 1 and 100",
            );
        }
        if !(1..=32).contains(&self.max_faces_per_person) {
            p.add(
                "store.max_faces_per_person",
                self.max_faces_per_person.to_string(),
                "must be between 1 and 32",
            );
        }
        if self.map_size_mib == 0 {
            p.add("store.map_size_mib", "0".into(), "must be at least 1");
        }
    }
}
