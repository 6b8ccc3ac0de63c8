//! The MQTT side: topics, event and access messages, Home Assistant discovery, the durable
//! outbox and the publisher task that drains it.

pub mod discovery;
pub mod event;
pub mod outbox;
pub mod publisher;
pub mod session;

/// The topics of one appliance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
    device_id: String,
}

impl Topics {
    pub fn new(prefix: &str, device_id: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            device_id: device_id.to_owned(),
        }
    }

    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    /// Retained `online` while connected; the Last Will sets `offline`.
    pub fn status(&self) -> String {
        format!("{}/{}/status", self.prefix, self.device_id)
    }

    /// Retained: the appliance's Ed25519 public key (base64), which signs access messages.
    pub fn pubkey(&self) -> String {
        format!("{}/{}/pubkey", self.prefix, self.device_id)
    }

    /// One message per decision of `camera`.
    pub fn event(&self, camera: &str) -> String {
        format!("{}/{}/{camera}/event", self.prefix, self.device_id)
    }

    /// Grant or denial for `door`.
    pub fn access(&self, door: &str) -> String {
        format!("{}/{}/{door}/access", self.prefix, self.device_id)
    }
}
