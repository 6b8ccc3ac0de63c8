//! `[mqtt]`: the link to door controllers and home automation.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Problems;

/// The MQTT link to door controllers and home automation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// Publish decisions to an MQTT broker (events, door access, availability, Home Assistant).
    pub enabled: bool,
    /// Broker address.
    pub host: String,
    /// Broker port (8883 is the usual TLS port).
    pub port: u16,
    /// TLS to the broker (rustls); needs ca_file.
    pub tls: bool,
    /// PEM file of the CA that signed the broker's certificate.
    #[serde(with = "super::optional_path")]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) for brokers that authenticate clients by certificate
    /// (mosquitto's require_certificate); needs tls and client_key_file. Empty: none.
    #[serde(with = "super::optional_path")]
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key of client_cert_file.
    #[serde(with = "super::optional_path")]
    pub client_key_file: Option<PathBuf>,
    /// User name; empty: connect without credentials.
    pub username: String,
    /// File whose first line is the password (or $FACEGATE_MQTT_PASSWORD).
    #[serde(with = "super::optional_path")]
    pub password_file: Option<PathBuf>,
    /// MQTT client id (the broker keeps this session across restarts). Empty: facegate-<device_id>.
    pub client_id: String,
    /// This appliance's topic level. Empty: the host name.
    pub device_id: String,
    /// Topics: <topic_prefix>/<device_id>/status, .../<camera>/event, .../<door>/access.
    pub topic_prefix: String,
    /// Seconds between keep-alive pings; the broker publishes the Last Will ("offline") after 1.5x.
    pub keep_alive_s: u16,
    /// Largest MQTT packet in KiB, both ways (rumqttc's 10 KiB default drops the connection on a
    /// thumbnail). An event that would exceed it is sent without its thumbnail, then without the
    /// person's metadata, then with the name cut ("truncated": true); a message the broker still
    /// refuses is set aside as a dead letter (facegate_outbox_dead_letters_total) so that the
    /// messages behind it go out.
    pub max_packet_kib: usize,
    /// Messages kept in the durable outbox (LMDB, <data_dir>/outbox) while the broker is away;
    /// past this the oldest are dropped and counted (facegate_outbox_dropped_total).
    pub outbox_max_events: usize,
    /// LMDB map size of the outbox in MiB (address space, not memory).
    pub outbox_map_mib: usize,
    /// Put a base64 JPEG face thumbnail into each event.
    pub event_thumbnail: bool,
    /// Announce a Home Assistant device (MQTT discovery), again whenever HA comes online.
    pub homeassistant: bool,
    /// Home Assistant's discovery prefix (it announces itself on <prefix>/status).
    pub discovery_prefix: String,
    /// On shutdown, seconds to wait for the broker to acknowledge the outbox before exiting.
    pub flush_timeout_s: f32,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            host: "127.0.0.1".into(),
            port: 1883,
            tls: false,
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            username: String::new(),
            password_file: None,
            client_id: String::new(),
            device_id: String::new(),
            topic_prefix: "facegate".into(),
            keep_alive_s: 15,
            max_packet_kib: 512,
            outbox_max_events: 10_000,
            outbox_map_mib: 256,
            event_thumbnail: false,
            homeassistant: true,
            discovery_prefix: "homeassistant".into(),
            flush_timeout_s: 5.0,
        }
    }
}

impl MqttConfig {
    /// This appliance's name in topics: `device_id`, else the host name.
    pub fn resolved_device_id(&self) -> String {
        if !self.device_id.is_empty() {
            return self.device_id.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::fs::read_to_string("/etc/hostname"))
            .unwrap_or_default();
        let host: String = host
            .trim()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if host.is_empty() {
            "facegate".into()
        } else {
            host
        }
    }
}

impl MqttConfig {
    /// Add every problem of this section to `p`.
    pub(super) fn validate(&self, p: &mut Problems) {
        let m = self;
        if m.topic_prefix.is_empty()
            || m.topic_prefix.contains(['#', '+'])
            || m.topic_prefix.ends_with('/')
        {
            p.add(
                "mqtt.topic_prefix",
                m.topic_prefix.clone(),
                "must be non-empty, without '#', '+' or a trailing '/'",
            );
        }
        if !m.device_id.is_empty() && !super::is_topic_segment(&m.device_id) {
            p.add(
                "mqtt.device_id",
                m.device_id.clone(),
                "must be empty or 1-64 letters, digits, '-' or '_'",
            );
        }
        if m.tls && m.ca_file.is_none() {
            p.add(
                "mqtt.ca_file",
                String::new(),
                "TLS needs the broker's CA certificate (PEM)",
            );
        }
        if m.client_cert_file.is_some() != m.client_key_file.is_some()
            || (m.client_cert_file.is_some() && !m.tls)
        {
            p.add(
                "mqtt.client_cert_file",
                super::path_text(&m.client_cert_file),
                "a client certificate needs client_key_file too, and tls = true",
            );
        }
        if m.max_packet_kib < 16 {
            p.add(
                "mqtt.max_packet_kib",
                m.max_packet_kib.to_string(),
                "must be at least 16",
            );
        }
        if m.outbox_max_events == 0 {
            p.add("mqtt.outbox_max_events", "0".into(), "must be at least 1");
        }
        if m.outbox_map_mib == 0 {
            p.add("mqtt.outbox_map_mib", "0".into(), "must be at least 1");
        }
        if m.keep_alive_s < 5 {
            p.add(
                "mqtt.keep_alive_s",
                m.keep_alive_s.to_string(),
                "must be at least 5",
            );
        }
        if !(m.flush_timeout_s.is_finite() && m.flush_timeout_s >= 0.0) {
            p.add(
                "mqtt.flush_timeout_s",
                m.flush_timeout_s.to_string(),
                "must be a non-negative number of seconds",
            );
        }
    }
}
