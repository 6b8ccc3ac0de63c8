//! `[door]`: the door controller (`facegate door`), which verifies access messages and drives
//! the lock's relay.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Problems;

/// What drives the lock.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RelayKind {
    /// A GPIO line through the Linux character device.
    #[default]
    Gpio,
    /// A program run for each opening.
    Command,
}

/// The door controller.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DoorConfig {
    /// The door driven (a `cameras.door` name of the appliances trusted).
    pub name: String,
    /// Appliances whose access messages are obeyed: device id → Ed25519 public key (base64).
    pub trusted_keys: BTreeMap<String, String>,
    /// How far the appliances' clocks may be from this one's, in seconds.
    pub max_clock_skew_s: f64,
    /// `gpio` or `command`.
    pub relay: RelayKind,
    /// GPIO character device.
    pub gpio_chip: PathBuf,
    /// Line offset on the chip.
    pub gpio_line: u32,
    /// The relay closes when the line is low.
    pub active_low: bool,
    /// Seconds the relay stays closed for one grant; a grant during the pulse extends it.
    pub pulse_s: f64,
    /// Program and arguments run for each opening (relay = "command"), with
    /// FACEGATE_DOOR, FACEGATE_PERSON_ID, FACEGATE_PERSON_NAME, FACEGATE_EVENT_ID and
    /// FACEGATE_PULSE_S in its environment.
    pub command: Vec<String>,
    /// File of the last sequence accepted per device. Empty: <data_dir>/door-<name>.sequences.
    #[serde(with = "super::optional_path")]
    pub state_file: Option<PathBuf>,
}

impl Default for DoorConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            trusted_keys: BTreeMap::new(),
            max_clock_skew_s: 2.0,
            relay: RelayKind::Gpio,
            gpio_chip: PathBuf::from("/dev/gpiochip0"),
            gpio_line: 0,
            active_low: false,
            pulse_s: 3.0,
            command: Vec::new(),
            state_file: None,
        }
    }
}

impl DoorConfig {
    /// Add every problem of this section to `p`. Whether a door is set at all is checked by
    /// `facegate door` ([`DoorConfig::require_controller`]): other commands need none.
    pub(super) fn validate(&self, p: &mut Problems) {
        if !self.name.is_empty() && !super::is_topic_segment(&self.name) {
            p.add(
                "door.name",
                self.name.clone(),
                "must be 1 to 64 letters, digits, '-' or '_' (a cameras.door name)",
            );
        }
        super::validate_trusted_keys(p, "door.trusted_keys", &self.trusted_keys);
        if !(0.0..=300.0).contains(&self.max_clock_skew_s) {
            p.add(
                "door.max_clock_skew_s",
                self.max_clock_skew_s.to_string(),
                "must be between 0 and 300 seconds",
            );
        }
        if !(self.pulse_s > 0.0 && self.pulse_s <= 60.0) {
            p.add(
                "door.pulse_s",
                self.pulse_s.to_string(),
                "must be above 0 and at most 60 seconds",
            );
        }
    }

    /// What `facegate door` needs beyond a valid section: a door, a trusted key, and a
    /// command when the relay is one.
    pub fn require_controller(&self) -> Result<(), String> {
        if self.name.is_empty() {
            return Err("door.name is not set: which door does this controller drive?".into());
        }
        if self.trusted_keys.is_empty() {
            return Err(
                "door.trusted_keys is empty: add `<device_id> = \"<public key>\"` of each \
                 appliance whose grants open this door"
                    .into(),
            );
        }
        if self.relay == RelayKind::Command && self.command.is_empty() {
            return Err("door.relay = \"command\" needs door.command".into());
        }
        Ok(())
    }

    /// The sequence state file in `data_dir` unless configured.
    pub fn resolved_state_file(&self, data_dir: &std::path::Path) -> PathBuf {
        self.state_file
            .clone()
            .unwrap_or_else(|| data_dir.join(format!("door-{}.sequences", self.name)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_controller_needs_a_door_a_trusted_key_and_valid_keys() {
        let mut c = DoorConfig::default();
        assert!(c.require_controller().unwrap_err().contains("door.name"));
        c.name = "main".into();
        assert!(c
            .require_controller()
            .unwrap_err()
            .contains("door.trusted_keys"));
        c.trusted_keys.insert("gate".into(), "not a key".into());
        let mut p = Problems::default();
        c.validate(&mut p);
        assert_eq!(p.0.len(), 1);
        assert_eq!(p.0[0].key, "door.trusted_keys");
        c.trusted_keys.insert(
            "gate".into(),
            "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=".into(),
        );
        let mut p = Problems::default();
        c.validate(&mut p);
        assert!(p.0.is_empty());
        assert_eq!(c.require_controller(), Ok(()));
        c.relay = RelayKind::Command;
        assert!(c.require_controller().unwrap_err().contains("door.command"));
    }
}
