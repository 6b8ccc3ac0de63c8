//! Home Assistant MQTT discovery: one device per appliance with, per camera, a "last person"
//! sensor and an event entity, and per door a binary sensor that turns on when access is
//! granted. The configs are retained and sent again when Home Assistant comes online.

use serde_json::json;

use super::outbox::OutboxMessage;
use super::Topics;

/// A camera as discovery sees it.
pub struct DiscoveredCamera<'a> {
    pub name: &'a str,
    pub door: Option<&'a str>,
}

/// The discovery config messages (retained).
pub fn messages(
    discovery_prefix: &str,
    topics: &Topics,
    cameras: &[DiscoveredCamera],
) -> Vec<OutboxMessage> {
    let dev = topics.device_id();
    let node = format!("facegate_{dev}");
    let device = json!({
        "identifiers": [node],
        "name": format!("facegate {dev}"),
        "manufacturer": "facegate",
        "model": "face recognition door appliance",
        "sw_version": env!("CARGO_PKG_VERSION"),
    });
    let availability = json!([{
        "topic": topics.status(),
        "payload_available": "online",
        "payload_not_available": "offline",
    }]);
    let mut out = Vec::new();
    let mut push = |component: &str, object: &str, mut config: serde_json::Value| {
        config["device"] = device.clone();
        config["availability"] = availability.clone();
        config["unique_id"] = json!(format!("{node}_{object}"));
        config["object_id"] = json!(format!("{node}_{object}"));
        out.push(OutboxMessage {
            topic: format!("{discovery_prefix}/{component}/{node}/{object}/config"),
            payload: config.to_string().into_bytes(),
            retain: true,
        });
    };
    for cam in cameras {
        let event_topic = topics.event(cam.name);
        push(
            "sensor",
            &format!("{}_last_person", cam.name),
            json!({
                "name": format!("{} last person", cam.name),
                "icon": "mdi:account-search",
                "state_topic": event_topic,
                "value_template":
                    "{{ value_json.person_name if value_json.type == 'match' else value_json.type }}",
                "json_attributes_topic": event_topic,
                "json_attributes_template":
                    "{{ {'person_id': value_json.person_id, 'similarity_score': value_json.similarity_score, 'liveness': value_json.liveness.verdict, 'event_id': value_json.event_id, 'ts': value_json.ts} | tojson }}",
            }),
        );
        push(
            "event",
            &format!("{}_face", cam.name),
            json!({
                "name": format!("{} face", cam.name),
                "state_topic": event_topic,
                "event_types": ["match", "unknown", "spoof", "undetermined"],
                "value_template":
                    "{{ {'event_type': value_json.type, 'person_id': value_json.person_id, 'person_name': value_json.person_name, 'similarity_score': value_json.similarity_score} | tojson }}",
            }),
        );
        if let Some(door) = cam.door {
            push(
                "binary_sensor",
                &format!("{door}_access"),
                json!({
                    "name": format!("{door} access granted"),
                    "icon": "mdi:door-open",
                    "state_topic": topics.access(door),
                    "value_template": "{{ 'ON' if value_json.granted else 'OFF' }}",
                    "off_delay": 5,
                }),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_sensor_and_one_event_entity_per_camera_and_a_binary_sensor_per_door() {
        let topics = Topics::new("facegate", "hall");
        let msgs = messages(
            "homeassistant",
            &topics,
            &[
                DiscoveredCamera {
                    name: "front",
                    door: Some("main"),
                },
                DiscoveredCamera {
                    name: "lobby",
                    door: None,
                },
            ],
        );
        let names: Vec<&str> = msgs.iter().map(|m| m.topic.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "homeassistant/sensor/facegate_hall/front_last_person/config",
                "homeassistant/event/facegate_hall/front_face/config",
                "homeassistant/binary_sensor/facegate_hall/main_access/config",
                "homeassistant/sensor/facegate_hall/lobby_last_person/config",
                "homeassistant/event/facegate_hall/lobby_face/config",
            ]
        );
        assert!(msgs.iter().all(|m| m.retain));
        let door: serde_json::Value = serde_json::from_slice(&msgs[2].payload).unwrap();
        assert_eq!(door["state_topic"], "facegate/hall/main/access");
        assert_eq!(door["availability"][0]["topic"], "facegate/hall/status");
        assert_eq!(door["device"]["identifiers"][0], "facegate_hall");
    }
}
