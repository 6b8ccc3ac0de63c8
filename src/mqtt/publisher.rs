//! The MQTT client task: owns rumqttc's event loop, announces availability (retained
//! `online`, Last Will `offline`) and Home Assistant discovery on every connection, and drains
//! the outbox in order, deleting each message only on its PUBACK.
//!
//! Each connection gets a fresh client and event loop, so nothing rumqttc held from the last
//! one is re-sent behind our back: after a reconnect the outbox is replayed from its oldest
//! message, which keeps delivery in order (at least once).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Outgoing, Packet, QoS, Transport};
use serde::Serialize;
use tokio::sync::{watch, Notify};

use super::outbox::{Outbox, OutboxMessage};
use super::Topics;
use crate::config::MqttConfig;

/// Outbox messages published and not yet acknowledged, at most.
const WINDOW: usize = 32;
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
    #[serde(with = "crate::clock::rfc3339_opt")]
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
    /// Home Assistant discovery configs, announced on every connection.
    pub discovery: Vec<OutboxMessage>,
    /// Home Assistant's birth topic, when discovery is on.
    pub ha_status: Option<String>,
    pub status: Arc<LinkStatus>,
    pub flush_timeout: Duration,
    pub times: Arc<PublishTimes>,
    pub observer: PublishObserver,
}

/// rumqttc options from the config: persistent session, QoS 1 Last Will, raised packet limit.
pub fn options(config: &MqttConfig, topics: &Topics) -> Result<MqttOptions, MqttSetupError> {
    let client_id = if config.client_id.is_empty() {
        format!("facegate-{}", topics.device_id())
    } else {
        config.client_id.clone()
    };
    let mut o = MqttOptions::new(client_id, config.host.clone(), config.port);
    o.set_keep_alive(Duration::from_secs(config.keep_alive_s as u64));
    // The broker keeps our session (and subscriptions) across reconnects; our own outbox
    // makes delivery survive even a broker that forgets it.
    o.set_clean_session(false);
    let max = config.max_packet_kib << 10;
    o.set_max_packet_size(max, max);
    o.set_last_will(LastWill::new(
        topics.status(),
        "offline",
        QoS::AtLeastOnce,
        true,
    ));
    if !config.username.is_empty() {
        let password = match (
            config.password_file.as_str(),
            std::env::var("FACEGATE_MQTT_PASSWORD"),
        ) {
            ("", Ok(p)) => p,
            ("", Err(_)) => String::new(),
            (path, _) => std::fs::read_to_string(path)
                .map_err(|source| MqttSetupError::Read {
                    what: "mqtt.password_file",
                    path: path.to_owned(),
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
        let ca = std::fs::read(&config.ca_file).map_err(|source| MqttSetupError::Read {
            what: "mqtt.ca_file",
            path: config.ca_file.clone(),
            source,
        })?;
        o.set_transport(Transport::tls_with_config(
            rumqttc::TlsConfiguration::Simple {
                ca,
                alpn: None,
                client_auth: None,
            },
        ));
    }
    Ok(o)
}

/// A request handed to rumqttc whose `Outgoing::Publish` has not been seen yet.
enum Sent {
    Outbox(u64),
    Other,
}

impl Publisher {
    /// Run until `stop` turns true; then flush the outbox for up to the flush timeout, publish
    /// `offline` and disconnect.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut backoff = BACKOFF_FIRST;
        loop {
            let (client, mut eventloop) = AsyncClient::new(self.options.clone(), 2 * WINDOW + 16);
            let mut session = Session::default();
            let mut stopping: Option<tokio::time::Instant> = None;
            let error = loop {
                if *stop.borrow() && stopping.is_none() {
                    stopping = Some(tokio::time::Instant::now() + self.flush_timeout);
                }
                if let Some(deadline) = stopping {
                    let flushed = self.outbox.depth() == 0 && session.inflight.is_empty();
                    if flushed || !session.connected || tokio::time::Instant::now() >= deadline {
                        self.disconnect(&client, &mut eventloop, session.connected)
                            .await;
                        return;
                    }
                }
                let tick = tokio::time::sleep(Duration::from_millis(100));
                tokio::select! {
                    changed = stop.changed(), if stopping.is_none() => {
                        if changed.is_err() {
                            // The daemon is gone without saying stop: stop as well.
                            stopping = Some(tokio::time::Instant::now() + self.flush_timeout);
                        }
                        continue;
                    }
                    _ = self.wake.notified(), if session.connected => {
                        self.fill_window(&client, &mut session);
                    }
                    _ = tick, if stopping.is_some() => {}
                    event = eventloop.poll() => match event {
                        Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                            backoff = BACKOFF_FIRST;
                            session = Session { connected: true, ..Session::default() };
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
                            if let Some(Sent::Outbox(key)) = session.sent.pop_front() {
                                session.inflight.insert(pkid, key);
                                if let Some(t) = self.times.take(key) {
                                    (self.observer)(t.elapsed());
                                }
                            }
                        }
                        Ok(Event::Incoming(Packet::PubAck(ack))) => {
                            if let Some(key) = session.inflight.remove(&ack.pkid) {
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
                                self.announce_discovery(&client, &mut session);
                            }
                        }
                        Ok(_) => {}
                        Err(e) => break e,
                    }
                }
            };
            self.status.connected.store(false, Ordering::Relaxed);
            *self.status.last_error.lock().unwrap() = Some((error.to_string(), SystemTime::now()));
            tracing::warn!(error = %error, retry_in = ?backoff, backlog = self.outbox.depth(), "MQTT connection lost");
            if stopping.is_some() || *stop.borrow() {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
            if *stop.borrow() {
                return;
            }
        }
    }

    fn announce(&self, client: &AsyncClient, session: &mut Session) {
        if client
            .try_publish(self.topics.status(), QoS::AtLeastOnce, true, "online")
            .is_ok()
        {
            session.sent.push_back(Sent::Other);
        }
        self.announce_discovery(client, session);
    }

    fn announce_discovery(&self, client: &AsyncClient, session: &mut Session) {
        for m in &self.discovery {
            if client
                .try_publish(
                    m.topic.clone(),
                    QoS::AtLeastOnce,
                    m.retain,
                    m.payload.clone(),
                )
                .is_ok()
            {
                session.sent.push_back(Sent::Other);
            }
        }
    }

    /// Publish outbox messages after the last one handed over, up to the window.
    fn fill_window(&self, client: &AsyncClient, session: &mut Session) {
        let in_window = session.inflight.len()
            + session
                .sent
                .iter()
                .filter(|s| matches!(s, Sent::Outbox(_)))
                .count();
        if in_window >= WINDOW {
            return;
        }
        let batch = match self
            .outbox
            .next_after(session.last_queued, WINDOW - in_window)
        {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the outbox");
                return;
            }
        };
        for (key, m) in batch {
            if client
                .try_publish(m.topic, QoS::AtLeastOnce, m.retain, m.payload)
                .is_err()
            {
                return;
            }
            session.sent.push_back(Sent::Outbox(key));
            session.last_queued = Some(key);
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

#[derive(Default)]
struct Session {
    connected: bool,
    sent: VecDeque<Sent>,
    /// Packet id → outbox key of published, unacknowledged outbox messages.
    inflight: HashMap<u16, u64>,
    last_queued: Option<u64>,
}
