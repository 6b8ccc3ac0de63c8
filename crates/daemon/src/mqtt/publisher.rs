//! The MQTT client task: owns rumqttc's event loop, announces availability (retained
//! `online`, Last Will `offline`) and Home Assistant discovery on every connection, and drains
//! the outbox in order, deleting each message only on its PUBACK.
//!
//! Each connection gets a fresh client and event loop, so nothing rumqttc held from the last
//! one is re-sent behind our back: after a reconnect the outbox is replayed from its oldest
//! message, which keeps delivery in order (at least once).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Outgoing, Packet, QoS, Transport};
use serde::Serialize;
use tokio::sync::Notify;

use super::outbox::{Outbox, OutboxMessage};
use super::session::{Session, Strikes, MAX_STRIKES, WINDOW};
use super::Topics;
use facegate_core::config::MqttConfig;

const BACKOFF_FIRST: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum MqttSetupError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
}

/// The connection state shown in `/health` and `/metrics`.
#[derive(Default)]
pub struct LinkStatus {
    connected: AtomicBool,
    connections: AtomicU64,
    acknowledged: AtomicU64,
    last_error: Mutex<Option<(String, SystemTime)>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LinkHealth {
    pub connected: bool,
    pub connections: u64,
    /// Outbox messages the broker has acknowledged since start.
    pub acknowledged: u64,
    pub last_error: Option<String>,
    #[serde(with = "facegate_core::clock::rfc3339_opt")]
    pub last_error_at: Option<SystemTime>,
}

impl LinkStatus {
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    pub fn acknowledged(&self) -> u64 {
        self.acknowledged.load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> LinkHealth {
        let e = self.last_error.lock().unwrap().clone();
        LinkHealth {
            connected: self.connected(),
            connections: self.connections.load(Ordering::Relaxed),
            acknowledged: self.acknowledged(),
            last_error: e.as_ref().map(|(m, _)| m.clone()),
            last_error_at: e.map(|(_, t)| t),
        }
    }
}

/// Capture instants of outbox messages not yet published, to measure capture → PUBLISH.
#[derive(Default)]
pub struct PublishTimes {
    pending: Mutex<HashMap<u64, std::time::Instant>>,
}

impl PublishTimes {
    pub fn record(&self, key: u64, captured_at: std::time::Instant) {
        let mut p = self.pending.lock().unwrap();
        // Bounded: a long outage must not grow this without limit.
        if p.len() < 100_000 {
            p.insert(key, captured_at);
        }
    }

    fn take(&self, key: u64) -> Option<std::time::Instant> {
        self.pending.lock().unwrap().remove(&key)
    }
}

/// Called with the capture → PUBLISH time of each event message published.
pub type PublishObserver = Box<dyn Fn(Duration) + Send + Sync>;

/// The MQTT task's parts (see [`Publisher::run`]).
pub struct Publisher {
    pub options: MqttOptions,
    pub topics: Topics,
    pub outbox: Arc<Outbox>,
    /// Notified when the outbox has new messages.
    pub wake: Arc<Notify>,
    /// Retained messages announced on every connection and again when Home Assistant comes
    /// online: the public key, then the Home Assistant discovery configs.
    pub announcements: Vec<OutboxMessage>,
    /// Home Assistant's birth topic, when discovery is on.
    pub ha_status: Option<String>,
    pub status: Arc<LinkStatus>,
    pub flush_timeout: Duration,
    pub times: Arc<PublishTimes>,
    pub observer: PublishObserver,
    /// `mqtt.max_packet_kib` in bytes: a message whose PUBLISH packet is larger is never sent
    /// (rumqttc would drop the connection on it) but set aside as a dead letter.
    pub max_packet: usize,
}

/// Bytes of the MQTT 3.1.1 PUBLISH packet (QoS 1) carrying `payload` on `topic`: fixed header,
/// topic, packet id, payload.
pub fn publish_packet_size(topic: &str, payload: usize) -> usize {
    let remaining = 2 + topic.len() + 2 + payload;
    let length_bytes = match remaining {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    };
    1 + length_bytes + remaining
}

/// rumqttc options from the config: persistent session, QoS 1 Last Will, raised packet limit.
pub fn options(config: &MqttConfig, topics: &Topics) -> Result<MqttOptions, MqttSetupError> {
    let mut o = connection_options(config, &client_id(config, topics))?;
    // The broker keeps our session (and subscriptions) across reconnects; our own outbox
    // makes delivery survive even a broker that forgets it.
    o.set_clean_session(false);
    o.set_last_will(LastWill::new(
        topics.status(),
        "offline",
        QoS::AtLeastOnce,
        true,
    ));
    Ok(o)
}

/// `mqtt.client_id`, or `facegate-<device_id>`.
pub fn client_id(config: &MqttConfig, topics: &Topics) -> String {
    if config.client_id.is_empty() {
        format!("facegate-{}", topics.device_id())
    } else {
        config.client_id.clone()
    }
}

/// Broker address, keep-alive, packet limit, credentials and TLS of `[mqtt]`, for a
/// connection with `client_id` (the event publisher's, or the fleet link's).
pub fn connection_options(
    config: &MqttConfig,
    client_id: &str,
) -> Result<MqttOptions, MqttSetupError> {
    let mut o = MqttOptions::new(client_id, config.host.clone(), config.port);
    o.set_keep_alive(Duration::from_secs(config.keep_alive_s as u64));
    let max = config.max_packet_kib << 10;
    o.set_max_packet_size(max, max);
    if !config.username.is_empty() {
        let password = match (
            &config.password_file,
            std::env::var("FACEGATE_MQTT_PASSWORD"),
        ) {
            (None, Ok(p)) => p,
            (None, Err(_)) => String::new(),
            (Some(path), _) => std::fs::read_to_string(path)
                .map_err(|source| MqttSetupError::Read {
                    what: "mqtt.password_file",
                    path: path.display().to_string(),
                    source,
                })?
                .lines()
                .next()
                .unwrap_or("")
                .to_owned(),
        };
        o.set_credentials(config.username.clone(), password);
    }
    if config.tls {
        let read = |what, path: &Option<std::path::PathBuf>| {
            let path = path.as_deref().unwrap_or(std::path::Path::new(""));
            std::fs::read(path).map_err(|source| MqttSetupError::Read {
                what,
                path: path.display().to_string(),
                source,
            })
        };
        let ca = read("mqtt.ca_file", &config.ca_file)?;
        let client_auth = if config.client_cert_file.is_none() {
            None
        } else {
            Some((
                read("mqtt.client_cert_file", &config.client_cert_file)?,
                read("mqtt.client_key_file", &config.client_key_file)?,
            ))
        };
        o.set_transport(Transport::tls_with_config(
            rumqttc::TlsConfiguration::Simple {
                ca,
                alpn: None,
                client_auth,
            },
        ));
    }
    Ok(o)
}

impl Publisher {
    /// Run until `stop` turns true; then flush the outbox for up to the flush timeout, publish
    /// `offline` and disconnect.
    pub async fn run(self, stop: crate::daemon::shutdown::Receiver) {
        let mut backoff = BACKOFF_FIRST;
        let mut strikes = Strikes::default();
        let mut unreachable_reported = false;
        loop {
            let (client, mut eventloop) = AsyncClient::new(self.options.clone(), 2 * WINDOW + 16);
            let mut session = Session::default();
            let mut stopping: Option<tokio::time::Instant> = None;
            let error = loop {
                if stop.is_requested() && stopping.is_none() {
                    stopping = Some(tokio::time::Instant::now() + self.flush_timeout);
                }
                if let Some(deadline) = stopping {
                    let flushed = self.outbox.depth() == 0 && session.nothing_in_flight();
                    if flushed || !session.is_connected() || tokio::time::Instant::now() >= deadline
                    {
                        self.disconnect(&client, &mut eventloop, session.is_connected())
                            .await;
                        return;
                    }
                }
                let tick = tokio::time::sleep(Duration::from_millis(100));
                tokio::select! {
                    // A dropped sender (the daemon gone without saying stop) is a request too.
                    _ = stop.clone().requested(), if stopping.is_none() => continue,
                    _ = self.wake.notified(), if session.is_connected() => {
                        self.fill_window(&client, &mut session);
                    }
                    _ = tick, if stopping.is_some() => {}
                    event = eventloop.poll() => match event {
                        Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                            // The backoff is not reset here: a broker that accepts the
                            // connection and drops it on the first message would otherwise be
                            // reconnected to at full speed forever.
                            session = Session::connected();
                            self.status.connected.store(true, Ordering::Relaxed);
                            self.status.connections.fetch_add(1, Ordering::Relaxed);
                            tracing::info!(session_present = ack.session_present,
                                backlog = self.outbox.depth(), "MQTT connected");
                            self.announce(&client, &mut session);
                            if let Some(t) = &self.ha_status {
                                let _ = client.try_subscribe(t.clone(), QoS::AtLeastOnce);
                            }
                            self.fill_window(&client, &mut session);
                        }
                        Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                            if let Some(key) = session.published(pkid, std::time::Instant::now()) {
                                if let Some(t) = self.times.take(key) {
                                    (self.observer)(t.elapsed());
                                }
                            }
                        }
                        Ok(Event::Incoming(Packet::PubAck(ack))) => {
                            let outbox_ack = session.acknowledged(ack.pkid);
                            if outbox_ack.is_some() || self.outbox.depth() == 0 {
                                // A publish went through: the link works.
                                backoff = BACKOFF_FIRST;
                            }
                            if let Some(key) = outbox_ack {
                                strikes.acknowledged(key);
                                match self.outbox.remove(key) {
                                    Ok(_) => {
                                        self.status.acknowledged.fetch_add(1, Ordering::Relaxed);
                                    }
                                    Err(e) => tracing::error!(error = %e, "cannot remove an acknowledged message from the outbox"),
                                }
                                self.fill_window(&client, &mut session);
                            }
                        }
                        Ok(Event::Incoming(Packet::Publish(p))) => {
                            if Some(&p.topic) == self.ha_status.as_ref() && &p.payload[..] == b"online" {
                                tracing::info!("Home Assistant came online: announcing discovery again");
                                self.announce_retained(&client, &mut session);
                            }
                        }
                        Ok(_) => {}
                        Err(e) => break e,
                    }
                }
            };
            self.status.connected.store(false, Ordering::Relaxed);
            *self.status.last_error.lock().unwrap() = Some((error.to_string(), SystemTime::now()));
            if let Some(key) = strikes.connection_lost(session.suspect(std::time::Instant::now())) {
                let why = format!(
                    "the broker dropped the connection each of the {MAX_STRIKES} times this \
                     message was the oldest unacknowledged one ({error})"
                );
                self.times.take(key);
                if let Err(e) = self.outbox.dead_letter(key, &why) {
                    tracing::error!(error = %e, "cannot set a message aside as a dead letter");
                }
            }
            // One warning when a working link goes down; the refused reconnects that follow
            // while the broker is away are debug lines (/health counts them), so an outage of
            // hours does not fill the journal.
            if session.is_connected() {
                unreachable_reported = false;
                tracing::warn!(error = %error, retry_in = ?backoff, backlog = self.outbox.depth(), "MQTT connection lost");
            } else if !unreachable_reported {
                unreachable_reported = true;
                tracing::warn!(error = %error, retry_in = ?backoff, backlog = self.outbox.depth(),
                    "MQTT broker unreachable; retrying (further failures are logged at debug level)");
            } else {
                tracing::debug!(error = %error, retry_in = ?backoff, backlog = self.outbox.depth(), "MQTT broker still unreachable");
            }
            if stopping.is_some() || stop.is_requested() {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.clone().requested() => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
            if stop.is_requested() {
                return;
            }
        }
    }

    fn announce(&self, client: &AsyncClient, session: &mut Session) {
        if client
            .try_publish(self.topics.status(), QoS::AtLeastOnce, true, "online")
            .is_ok()
        {
            session.queued_other();
        }
        self.announce_retained(client, session);
    }

    fn announce_retained(&self, client: &AsyncClient, session: &mut Session) {
        for m in &self.announcements {
            if client
                .try_publish(
                    m.topic.clone(),
                    QoS::AtLeastOnce,
                    m.retain,
                    m.payload.clone(),
                )
                .is_ok()
            {
                session.queued_other();
            }
        }
    }

    /// Publish outbox messages after the last one handed over, up to the window.
    fn fill_window(&self, client: &AsyncClient, session: &mut Session) {
        let room = session.room();
        if room == 0 {
            return;
        }
        let batch = match self.outbox.next_after(session.last_queued(), room) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the outbox");
                return;
            }
        };
        for (key, m) in batch {
            if publish_packet_size(&m.topic, m.payload.len()) > self.max_packet {
                // rumqttc would refuse it and drop the connection, on every connection.
                self.times.take(key);
                if let Err(e) = self
                    .outbox
                    .dead_letter(key, "larger than mqtt.max_packet_kib")
                {
                    tracing::error!(error = %e, "cannot set a message aside as a dead letter");
                }
                session.skipped(key);
                continue;
            }
            if client
                .try_publish(m.topic, QoS::AtLeastOnce, m.retain, m.payload)
                .is_err()
            {
                return;
            }
            session.queued(key);
        }
    }

    async fn disconnect(
        &self,
        client: &AsyncClient,
        eventloop: &mut rumqttc::EventLoop,
        connected: bool,
    ) {
        self.status.connected.store(false, Ordering::Relaxed);
        if !connected {
            return;
        }
        // A clean disconnect does not fire the Last Will, so say `offline` ourselves.
        let _ = client.try_publish(self.topics.status(), QoS::AtLeastOnce, true, "offline");
        let _ = client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Ok(ev) = eventloop.poll().await {
                if matches!(ev, Event::Outgoing(Outgoing::Disconnect)) {
                    break;
                }
            }
        })
        .await;
        tracing::info!(left_in_outbox = self.outbox.depth(), "MQTT disconnected");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_packet_size_is_what_rumqttc_encodes() {
        for (topic, payload) in [
            ("t", 0),
            ("facegate/dev/front/event", 100),
            ("a/b", 20_000),
            ("x", 3_000_000),
        ] {
            let mut p = rumqttc::Publish::new(topic, QoS::AtLeastOnce, vec![0u8; payload]);
            p.pkid = 1;
            assert_eq!(
                publish_packet_size(topic, payload),
                p.size(),
                "{topic} {payload}"
            );
        }
    }
}
