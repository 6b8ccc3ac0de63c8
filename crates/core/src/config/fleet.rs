//! `[fleet]`: one gallery for a site of many appliances, replicated through the MQTT broker
//! (crate::fleet, docs/fleet.md).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Problems;

/// Gallery replication between the appliances of a site.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FleetConfig {
    /// Publish every gallery change to the broker of `[mqtt]` and apply those of the other
    /// appliances of the site. Needs mqtt.enabled.
    pub enabled: bool,
    /// The site: records live under <topic_prefix>/fleet/<site>/.
    pub site: String,
    /// Appliances whose records are applied: device id → Ed25519 public key (base64), as for
    /// door.trusted_keys. This appliance trusts itself.
    pub trusted_devices: BTreeMap<String, String>,
    /// Days a deletion is remembered (and its tombstone retained on the broker); an appliance
    /// offline longer must be re-joined (docs/fleet.md).
    pub tombstone_days: u32,
    /// Replicate enrolment thumbnails with the templates (full photos never are).
    pub thumbnails: bool,
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            site: "site".into(),
            trusted_devices: BTreeMap::new(),
            tombstone_days: 30,
            thumbnails: true,
        }
    }
}

impl FleetConfig {
    /// The trusted devices' keys (validated, so this cannot fail on a loaded config).
    pub fn trusted_keys(&self) -> crate::fleet::Trusted {
        self.trusted_devices
            .iter()
            .filter_map(|(d, k)| {
                Some((
                    d.clone(),
                    crate::access::device_key::parse_public_key(k).ok()?,
                ))
            })
            .collect()
    }

    pub(super) fn validate(&self, p: &mut Problems, mqtt_enabled: bool) {
        if !super::is_topic_segment(&self.site) {
            p.add(
                "fleet.site",
                self.site.clone(),
                "must be 1 to 64 letters, digits, '-' or '_'",
            );
        }
        if self.enabled && !mqtt_enabled {
            p.add(
                "fleet.enabled",
                "true".into(),
                "needs mqtt.enabled = true: the gallery is replicated through the MQTT broker",
            );
        }
        if !(1..=3650).contains(&self.tombstone_days) {
            p.add(
                "fleet.tombstone_days",
                self.tombstone_days.to_string(),
                "must be 1 to 3650",
            );
        }
        super::validate_trusted_keys(p, "fleet.trusted_devices", &self.trusted_devices);
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn a_fleet_needs_mqtt_a_site_and_valid_keys() {
        let e = Config::parse("[fleet]\nenabled = true\n").unwrap_err();
        assert!(e.contains("fleet.enabled"), "{e}");
        let e = Config::parse(
            "[mqtt]\nenabled = true\n[fleet]\nenabled = true\nsite = \"a/b\"\ntombstone_days = 0\n\
             [fleet.trusted_devices]\ndoor-b = \"nope\"\n",
        )
        .unwrap_err();
        for key in [
            "fleet.site",
            "fleet.tombstone_days",
            "fleet.trusted_devices",
        ] {
            assert!(e.contains(key), "{key}: {e}");
        }
        let ok = Config::parse(
            "[mqtt]\nenabled = true\n[fleet]\nenabled = true\n[fleet.trusted_devices]\n\
             door-b = \"A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=\"\n",
        )
        .unwrap();
        assert_eq!(ok.fleet.trusted_keys().len(), 1);
    }
}
