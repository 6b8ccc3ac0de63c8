//! `facegate door`: the reference door controller. It subscribes to one door's access topic of
//! each trusted appliance, judges every message ([`facegate_core::access::guard`]: signature,
//! door, sequence, expiry), persists the sequences it accepted before it acts, drives the
//! relay for a grant, and publishes each outcome and the lock state (retained, with Home
//! Assistant discovery) on `<prefix>/<device_id>/<door>/state`.

pub mod relay;
pub mod sequence_file;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, LastWill, Packet, QoS};
use serde_json::json;

use crate::daemon::shutdown;
use crate::mqtt::publisher::{self, MqttSetupError};
use crate::mqtt::Topics;
use facegate_core::access::device_key::parse_public_key;
use facegate_core::access::guard::{Guard, Rejection, Sequences, Verdict};
use facegate_core::clock::Clock;
use facegate_core::config::Config;
use relay::{Backend, LockState, Opening, Relay, RelayError};
use sequence_file::SequenceFileError;

#[derive(Debug, thiserror::Error)]
pub enum DoorError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Mqtt(#[from] MqttSetupError),
    #[error(transparent)]
    Relay(#[from] RelayError),
    #[error(transparent)]
    Sequences(#[from] SequenceFileError),
}

/// The controller's topics.
#[derive(Debug, Clone)]
pub struct DoorTopics {
    prefix: String,
    /// This controller's device id (the `[mqtt]` one).
    device_id: String,
    door: String,
}

impl DoorTopics {
    /// Grants and denials of appliance `device` for this door.
    pub fn access(&self, device: &str) -> String {
        Topics::new(&self.prefix, device).access(&self.door)
    }

    /// Retained: the lock state and the last outcome.
    pub fn state(&self) -> String {
        format!("{}/{}/{}/state", self.prefix, self.device_id, self.door)
    }

    /// Retained `online` while connected; the Last Will sets `offline`.
    pub fn availability(&self) -> String {
        format!(
            "{}/{}/{}/controller",
            self.prefix, self.device_id, self.door
        )
    }
}

/// What the controller did with one message, as published on the state topic.
fn outcome_json(result: &Result<Verdict, Rejection>, at: &str) -> serde_json::Value {
    match result {
        Ok(Verdict::Open(m)) | Ok(Verdict::Denied(m)) => json!({
            "result": if m.granted { "opened" } else { "denied" },
            "reason": m.reason,
            "device_id": m.device_id,
            "person_id": m.person_id,
            "person_name": m.person_name,
            "event_id": m.event_id,
            "sequence": m.sequence,
            "at": at,
        }),
        Err(e) => json!({
            "result": "refused",
            "reason": e.reason(),
            "detail": e.to_string(),
            "at": at,
        }),
    }
}

/// The parts of a running controller (see [`Controller::run`]).
pub struct Controller {
    pub guard: Guard,
    pub topics: DoorTopics,
    pub options: rumqttc::MqttOptions,
    pub state_file: PathBuf,
    pub pulse: Duration,
    pub clock: Arc<dyn Clock>,
    pub discovery_prefix: Option<String>,
}

impl Controller {
    /// The controller `config` describes, with its state file in `data_dir`.
    pub fn from_config(
        config: &Config,
        data_dir: &Path,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, DoorError> {
        let d = &config.door;
        d.require_controller().map_err(DoorError::Config)?;
        let trusted = d
            .trusted_keys
            .iter()
            .map(|(device, key)| {
                parse_public_key(key)
                    .map(|k| (device.clone(), k))
                    .map_err(|e| DoorError::Config(format!("door.trusted_keys.{device}: {e}")))
            })
            .collect::<Result<_, _>>()?;
        let m = &config.mqtt;
        let device_id = m.resolved_device_id();
        let topics = DoorTopics {
            prefix: m.topic_prefix.clone(),
            device_id: device_id.clone(),
            door: d.name.clone(),
        };
        let mut mqtt = m.clone();
        if mqtt.client_id.is_empty() {
            mqtt.client_id = format!("facegate-door-{device_id}-{}", d.name);
        } else {
            mqtt.client_id = format!("{}-door-{}", mqtt.client_id, d.name);
        }
        let mut options = publisher::options(&mqtt, &Topics::new(&m.topic_prefix, &device_id))?;
        options.set_last_will(LastWill::new(
            topics.availability(),
            "offline",
            QoS::AtLeastOnce,
            true,
        ));
        // Messages queued by the broker while the controller was away are stale by the time
        // it is back: start each connection afresh and subscribe again.
        options.set_clean_session(true);
        Ok(Self {
            guard: Guard {
                door: d.name.clone(),
                trusted,
                max_skew_ms: (d.max_clock_skew_s * 1000.0).round() as i64,
            },
            topics,
            options,
            state_file: d.resolved_state_file(data_dir),
            pulse: Duration::from_secs_f64(d.pulse_s),
            clock,
            discovery_prefix: m.homeassistant.then(|| m.discovery_prefix.clone()),
        })
    }

    /// Run until `stop`: connect (reconnecting with backoff), judge every access message,
    /// drive `backend`, publish outcomes and the lock state.
    pub async fn run(self, backend: Backend, stop: shutdown::Receiver) -> Result<(), DoorError> {
        let mut sequences = sequence_file::load(&self.state_file)?;
        let (lock_tx, mut lock_rx) = tokio::sync::mpsc::unbounded_channel();
        tracing::info!(door = %self.guard.door, relay = %backend.describe(),
            trusted = ?self.guard.trusted.keys().collect::<Vec<_>>(),
            state_file = %self.state_file.display(), "door controller starting");
        let relay = Relay::spawn(
            backend,
            self.guard.door.clone(),
            self.pulse,
            Box::new(move |s| {
                let _ = lock_tx.send(s);
            }),
        )?;
        let mut lock = LockState::Locked;
        let mut last = serde_json::Value::Null;
        let mut backoff = Duration::from_millis(200);
        loop {
            let (client, mut eventloop) = AsyncClient::new(self.options.clone(), 64);
            let error = loop {
                tokio::select! {
                    _ = stop.clone().requested() => {
                        let _ = client.try_publish(self.topics.availability(), QoS::AtLeastOnce, true, "offline");
                        let _ = client.try_disconnect();
                        let _ = tokio::time::timeout(Duration::from_secs(2), async {
                            while let Ok(ev) = eventloop.poll().await {
                                if matches!(ev, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
                                    break;
                                }
                            }
                        }).await;
                        relay.stop();
                        tracing::info!("door controller stopped");
                        return Ok(());
                    }
                    Some(change) = lock_rx.recv() => {
                        match change {
                            Ok(state) => lock = state,
                            Err(e) => last = json!({"result": "error", "reason": "relay_error",
                                "detail": e, "at": self.now_text()}),
                        }
                        self.publish_state(&client, lock, &last);
                    }
                    event = eventloop.poll() => match event {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => {
                            backoff = Duration::from_millis(200);
                            tracing::info!("door controller connected");
                            for device in self.guard.trusted.keys() {
                                let _ = client.try_subscribe(self.topics.access(device), QoS::AtLeastOnce);
                            }
                            let _ = client.try_publish(self.topics.availability(), QoS::AtLeastOnce, true, "online");
                            self.announce(&client);
                            self.publish_state(&client, lock, &last);
                        }
                        Ok(Event::Incoming(Packet::SubAck(ack))) => {
                            if ack.return_codes.iter().any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure)) {
                                tracing::error!("the broker refused the subscription to the access topic (its ACL?): no grant can arrive");
                                last = json!({"result": "error", "reason": "subscription_refused",
                                    "detail": "the broker refused the subscription to the access topic", "at": self.now_text()});
                                self.publish_state(&client, lock, &last);
                            }
                        }
                        Ok(Event::Incoming(Packet::Publish(p))) => {
                            let result = self.judge(&p.payload, &mut sequences);
                            if let Ok(Verdict::Open(m)) = &result {
                                relay.open(Opening {
                                    person_id: m.person_id.clone(),
                                    person_name: m.person_name.clone(),
                                    event_id: m.event_id.clone(),
                                });
                            }
                            self.log(&p.topic, &result);
                            last = outcome_json(&result, &self.now_text());
                            self.publish_state(&client, lock, &last);
                        }
                        Ok(_) => {}
                        Err(e) => break e,
                    }
                }
            };
            tracing::warn!(error = %error, retry_in = ?backoff, "door controller: MQTT connection lost");
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.clone().requested() => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }

    /// Judge a payload and, when the sequences moved, make them durable before the caller
    /// acts: a grant is never acted on twice, even across a crash.
    fn judge(&self, payload: &[u8], sequences: &mut Sequences) -> Result<Verdict, Rejection> {
        let before = sequences.clone();
        let now = jiff::Timestamp::from_millisecond(self.clock.now_ms())
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let result = self.guard.judge(payload, now, sequences);
        if *sequences != before {
            if let Err(e) = sequence_file::save(&self.state_file, sequences) {
                tracing::error!(error = %e, "cannot save the accepted sequences: not acting on the message");
                *sequences = before;
                return Err(Rejection::StateNotSaved(e.to_string()));
            }
        }
        result
    }

    fn now_text(&self) -> String {
        facegate_core::clock::rfc3339(self.clock.now_ms())
    }

    fn log(&self, topic: &str, result: &Result<Verdict, Rejection>) {
        match result {
            Ok(Verdict::Open(m)) => tracing::info!(door = %m.door, device = %m.device_id,
                person = m.person_id.as_deref().unwrap_or("-"), sequence = m.sequence,
                event_id = %m.event_id, "door opened"),
            Ok(Verdict::Denied(m)) => tracing::info!(door = %m.door, device = %m.device_id,
                person = m.person_id.as_deref().unwrap_or("-"), reason = %m.reason,
                sequence = m.sequence, "access denied by the appliance"),
            Err(e) => tracing::warn!(topic, reason = e.reason(), detail = %e,
                "access message refused"),
        }
    }

    fn publish_state(&self, client: &AsyncClient, lock: LockState, last: &serde_json::Value) {
        let payload = json!({
            "door": self.guard.door,
            "lock": lock.name(),
            "last": last,
        });
        let _ = client.try_publish(
            self.topics.state(),
            QoS::AtLeastOnce,
            true,
            serde_json::to_vec(&payload).unwrap_or_default(),
        );
    }

    /// Home Assistant: a read-only lock sensor per door (a binary sensor of class `lock`: on
    /// is unlocked). Never a command topic: the lock opens for signed grants only.
    fn announce(&self, client: &AsyncClient) {
        let Some(prefix) = &self.discovery_prefix else {
            return;
        };
        let node = format!("facegate_{}", self.topics.device_id.replace('-', "_"));
        let object = format!("{}_lock", self.guard.door.replace('-', "_"));
        let config = json!({
            "name": format!("{} lock", self.guard.door),
            "unique_id": format!("{node}_{object}"),
            "device_class": "lock",
            "state_topic": self.topics.state(),
            "value_template": "{{ value_json.lock }}",
            "payload_on": "unlocked",
            "payload_off": "locked",
            "json_attributes_topic": self.topics.state(),
            "json_attributes_template": "{{ value_json.last | tojson }}",
            "availability_topic": self.topics.availability(),
            "device": {
                "identifiers": [format!("{node}_door_{}", self.guard.door)],
                "name": format!("facegate door {}", self.guard.door),
                "manufacturer": "facegate",
                "sw_version": env!("CARGO_PKG_VERSION"),
            },
        });
        let _ = client.try_publish(
            format!("{prefix}/binary_sensor/{node}/{object}/config"),
            QoS::AtLeastOnce,
            true,
            serde_json::to_vec(&config).unwrap_or_default(),
        );
    }
}
