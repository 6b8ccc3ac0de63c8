//! The fleet link (`[fleet]`, docs/fleet.md): publishes this appliance's gallery changes as
//! retained, signed records under `<prefix>/fleet/<site>/` and applies the records of the
//! site's other trusted appliances (facegate_core::fleet, store::replication).
//!
//! Its own MQTT connection, separate from the event publisher's, with a clean session: on
//! every connection it subscribes again and the broker sends the retained state of every
//! person, so an appliance back from any outage (or a broker that lost its sessions)
//! converges without a queue of missed messages; after it, what the broker lacks is published
//! again (a broker that lost its store) or, after an absence longer than the tombstones live,
//! deleted here (store::replication::Store::reconcile_after_sync). What it has not yet had acknowledged stays
//! queued in the store (`fleet_pending`), written in the same transaction as the change.
//!
//! Store writes (applying records, clearing acknowledged ones) happen on one thread of their
//! own, batched: a joining appliance applies thousands of records per commit.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use serde_json::json;
use tokio::sync::Notify;

use crate::mqtt::publisher::publish_packet_size;
use facegate_core::fleet::{self, Record, Sealed, Trusted, Version};
use facegate_core::store::replication::{register_key, split_register_key, Applied};
use facegate_core::store::Store;

/// Records published and not yet acknowledged, at most.
const WINDOW: usize = 64;
/// Records applied in one store transaction, at most.
const BATCH: usize = 512;
/// Retained records asked for at once while catching up: well inside mosquitto's default
/// per-client queue (1,020), which drops what exceeds it.
const SHARD_RECORDS_AT_ONCE: u64 = 400;
/// Largest record taken from the broker (a peer's mqtt.max_packet_kib may be larger).
const MAX_INCOMING_PACKET: usize = 16 << 20;
/// A catch-up whose next marker has not come for this long is started again.
const SYNC_STALL: Duration = Duration::from_secs(60);
/// Acknowledged records remembered until the store has cleared them.
const ACKED_KEPT: usize = 65_536;
/// How often old tombstones are looked for.
const EXPIRY_EVERY: Duration = Duration::from_secs(3600);
const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// What `/health` and `/metrics` show of the fleet link.
#[derive(Default)]
pub struct FleetStatus {
    pub site: String,
    pub device_id: String,
    connected: AtomicBool,
    connections: AtomicU64,
    /// Every shard's retained state taken since the last connection.
    synced: AtomicBool,
    /// How long that took, ms.
    sync_ms: AtomicU64,
    published: AtomicU64,
    /// Payload bytes of the records received (a joining appliance's catch-up).
    bytes_received: AtomicU64,
    cleared: AtomicU64,
    /// Received records by outcome (`applied`, `same`, `older`, `superseded`, `wrong_model`,
    /// `invalid`, `malformed`, `untrusted`, `bad_signature`).
    outcomes: Mutex<BTreeMap<&'static str, u64>>,
    /// Per appliance whose changes were applied here: the latest one.
    peers: Mutex<BTreeMap<String, PeerStatus>>,
    /// Models of refused records, for `doctor` and `/health`.
    foreign_models: Mutex<BTreeMap<String, String>>,
    /// What each appliance of the site announces (`<base>/device/<id>`): its embedding model.
    devices: Mutex<BTreeMap<String, String>>,
}

/// What an appliance announces, retained, on `<base>/device/<device_id>`: the model its
/// templates are of (the fleet must agree on it) and the key its records are signed with.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct DeviceAnnouncement {
    pub device_id: String,
    pub model: String,
    pub public_key: String,
    pub version: String,
}

/// The topic of an appliance's announcement.
pub fn device_topic(base: &str, device_id: &str) -> String {
    format!("{base}/device/{}", fleet::topic_level(device_id))
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PeerStatus {
    /// The version of the latest record of this appliance applied here.
    pub last_version: Version,
    /// When it was applied (ms since the epoch).
    pub applied_at_ms: i64,
    /// Applied minus written: how far behind this appliance its changes arrive.
    pub lag_ms: i64,
    pub applied: u64,
}

impl FleetStatus {
    pub fn new(site: &str, device_id: &str) -> Self {
        Self {
            site: site.to_owned(),
            device_id: device_id.to_owned(),
            ..Self::default()
        }
    }

    pub fn bytes_received(&self) -> u64 {
        self.bytes_received.load(Ordering::Relaxed)
    }

    /// Records received with `outcome` so far.
    pub fn received(&self, outcome: &str) -> u64 {
        self.outcomes
            .lock()
            .unwrap()
            .get(outcome)
            .copied()
            .unwrap_or(0)
    }

    /// Whether the broker's retained state has been taken in full since the last connection.
    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::Relaxed)
    }

    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    fn count(&self, outcome: &'static str) {
        *self.outcomes.lock().unwrap().entry(outcome).or_default() += 1;
    }

    /// Records received by outcome, over this process's life.
    pub fn outcomes(&self) -> BTreeMap<&'static str, u64> {
        self.outcomes.lock().unwrap().clone()
    }

    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// Per peer appliance, how far behind its changes arrive (seconds).
    pub fn peer_lags(&self) -> Vec<(String, f64)> {
        self.peers
            .lock()
            .unwrap()
            .iter()
            .map(|(d, p)| (d.clone(), p.lag_ms as f64 / 1000.0))
            .collect()
    }

    pub fn json(&self, store: &Store) -> serde_json::Value {
        json!({
            "enabled": true,
            "site": self.site,
            "device_id": self.device_id,
            "connected": self.connected(),
            "connections": self.connections.load(Ordering::Relaxed),
            "synced": self.synced(),
            "last_sync_ms": self.sync_ms.load(Ordering::Relaxed),
            "pending": store.pending_count(),
            "published": self.published(),
            "bytes_received": self.bytes_received(),
            "tombstones_cleared": self.cleared.load(Ordering::Relaxed),
            "registers": store.register_count(),
            "received": self.outcomes(),
            "peers": *self.peers.lock().unwrap(),
            "refused_models": *self.foreign_models.lock().unwrap(),
            "devices": *self.devices.lock().unwrap(),
        })
    }
}

/// The link's parts (see [`FleetLink::run`]).
pub struct FleetLink {
    pub options: MqttOptions,
    /// `<prefix>/fleet/<site>`.
    pub base: String,
    pub store: Arc<Store>,
    pub key: SigningKey,
    pub trusted: Trusted,
    pub thumbnails: bool,
    pub tombstone_ms: i64,
    /// Notified by the store after a commit that queued records.
    pub wake: Arc<Notify>,
    pub status: Arc<FleetStatus>,
    /// `mqtt.max_packet_kib` in bytes.
    pub max_packet: usize,
}

/// Work for the store thread.
enum Job {
    /// A record's topic and payload.
    Received(String, Vec<u8>),
    Acknowledged(Vec<u8>, Version),
    /// A connection starts taking the retained state (at this time, ms).
    SyncStarted(i64),
    /// Every shard's retained state is in (the records of the sync are ahead in the queue).
    SyncDone,
    /// Still connected and in sync (each minute): what counts as the last full sync.
    InSync,
}

/// A record handed to the client, waiting for its packet id, then for the broker's PUBACK.
type Sent = Option<(Vec<u8>, Version)>;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl FleetLink {
    /// Run until `stop` is requested.
    pub async fn run(self, stop: crate::daemon::shutdown::Receiver) {
        let (jobs, receiver) = tokio::sync::mpsc::channel::<Job>(4 * BATCH);
        // Registers the store thread queued again (a key) or many at once (None).
        let (requeue, mut requeued) = tokio::sync::mpsc::unbounded_channel::<Option<Vec<u8>>>();
        let worker = {
            let store = self.store.clone();
            let status = self.status.clone();
            let trusted = self.trusted.clone();
            let tombstone_ms = self.tombstone_ms;
            let base = self.base.clone();
            std::thread::Builder::new()
                .name("fleet-apply".into())
                .spawn(move || {
                    apply_loop(
                        receiver,
                        &store,
                        &status,
                        &trusted,
                        &base,
                        tombstone_ms,
                        &requeue,
                    )
                })
        };
        if let Err(e) = worker {
            tracing::error!(error = %e, "cannot start the fleet's store thread: fleet replication is off");
            return;
        }
        // Told apart on every incoming message: built once.
        let sync_topic = self.sync_topic();
        let device_prefix = format!("{}/device/", self.base);
        let mut backoff = BACKOFF_FIRST;
        let mut next_expiry = tokio::time::Instant::now() + EXPIRY_EVERY;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let (client, mut eventloop) =
                AsyncClient::new(self.options.clone(), 2 * WINDOW + 2 * 32 + 16);
            // Without it, a record written right behind another waits for the broker's
            // delayed ACK (Nagle): 40 ms per record, and per shard while catching up.
            let mut network = eventloop.network_options();
            network.set_tcp_nodelay(true);
            eventloop.set_network_options(network);
            // Incoming records from peers whose mqtt.max_packet_kib is larger than ours must
            // not break the link on every connection.
            eventloop
                .mqtt_options
                .set_max_packet_size(MAX_INCOMING_PACKET.max(self.max_packet), self.max_packet);
            let mut waiting_id: VecDeque<Sent> = VecDeque::new();
            let mut in_flight: HashMap<u16, Sent> = HashMap::new();
            let mut cursor: Option<Vec<u8>> = None;
            // Acknowledged by the broker, not yet cleared by the store thread: not sent again.
            let mut acked: HashMap<Vec<u8>, Version> = HashMap::new();
            let mut last_marker = Instant::now();
            // Shards asked for whose marker has not come yet.
            let mut outstanding = std::collections::BTreeSet::new();
            // Publish nothing until the broker's state is in (an appliance away for longer than
            // the tombstones live: its old changes may undo deletions made meanwhile).
            let mut hold = false;
            let mut ticks = 0u32;
            let mut connected = false;
            let mut nonce = 0u64;
            let mut sync_started = Instant::now();
            let (mut shards_asked, mut shards_done, mut records_since_connect) =
                (0usize, 0usize, 0u64);
            let error = loop {
                tokio::select! {
                    _ = stop.clone().requested() => {
                        self.status.connected.store(false, Ordering::Relaxed);
                        let _ = client.try_disconnect();
                        let _ = tokio::time::timeout(Duration::from_secs(1), eventloop.poll()).await;
                        return;
                    }
                    _ = self.wake.notified(), if connected => {
                        self.fill_window(&client, &mut waiting_id, &in_flight, &mut cursor, &mut acked, &jobs, hold);
                    }
                    Some(key) = requeued.recv() => {
                        // Queued again to repair the broker's copy: sent even if this version
                        // was acknowledged before.
                        match key {
                            Some(key) => { acked.remove(&key); }
                            None => acked.clear(),
                        }
                        if connected {
                            self.fill_window(&client, &mut waiting_id, &in_flight, &mut cursor, &mut acked, &jobs, hold);
                        }
                    }
                    _ = tick.tick(), if connected => {
                        ticks = ticks.wrapping_add(1);
                        if ticks.is_multiple_of(60) && self.status.synced() && jobs.send(Job::InSync).await.is_err() {
                            return self.store_thread_gone();
                        }
                        // Tombstones expire only once this appliance has the broker's state
                        // and has published all of its own.
                        if tokio::time::Instant::now() >= next_expiry
                            && self.status.synced()
                            && self.store.pending_count() == 0
                        {
                            let more = self.expire(&client, &mut waiting_id).await;
                            next_expiry = tokio::time::Instant::now()
                                + if more { Duration::from_secs(5) } else { EXPIRY_EVERY };
                        }
                        if !self.status.synced() && last_marker.elapsed() > SYNC_STALL {
                            break "the broker's retained state stopped arriving (a marker lost): reconnecting".to_owned();
                        }
                        self.fill_window(&client, &mut waiting_id, &in_flight, &mut cursor, &mut acked, &jobs, hold);
                    }
                    event = eventloop.poll() => match event {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => {
                            connected = true;
                            backoff = BACKOFF_FIRST;
                            self.status.connected.store(true, Ordering::Relaxed);
                            self.status.synced.store(false, Ordering::Relaxed);
                            self.status.connections.fetch_add(1, Ordering::Relaxed);
                            // Random (the low half of a UUIDv7): markers of an earlier connection are not taken
                            // for this one's (anyone allowed to read the topic sees it: broker ACLs).
                            nonce = uuid::Uuid::now_v7().as_u64_pair().1;
                            last_marker = Instant::now();
                            sync_started = Instant::now();
                            if jobs.send(Job::SyncStarted(now_ms())).await.is_err() {
                                return self.store_thread_gone();
                            }
                            hold = self.store.sync_is_stale(self.tombstone_ms);
                            if hold {
                                tracing::warn!(tombstone_days = self.tombstone_ms / 86_400_000,
                                    "fleet: the last full sync is older than the tombstones live: \
                                     nothing is published until the broker's state is in");
                            }
                            tracing::info!(base = %self.base, pending = self.store.pending_count(),
                                "fleet link connected; taking the retained state shard by shard");
                            let subscribed = client
                                .try_subscribe(self.sync_topic(), QoS::AtLeastOnce)
                                .and_then(|()| client.try_subscribe(format!("{}/device/+", self.base), QoS::AtLeastOnce))
                                .and_then(|()| self.announce(&client, &mut waiting_id))
                                .and_then(|()| client.try_subscribe(format!("{}/collection/+", self.base), QoS::AtLeastOnce))
                                .and_then(|()| self.take_shard(&client, nonce, 0, &mut waiting_id));
                            (shards_asked, shards_done, records_since_connect) = (1, 0, 0);
                            outstanding = std::collections::BTreeSet::from([0]);
                            if let Err(e) = subscribed {
                                break format!("cannot subscribe: {e}");
                            }
                            self.fill_window(&client, &mut waiting_id, &in_flight, &mut cursor, &mut acked, &jobs, hold);
                        }
                        Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                            if let Some(sent) = waiting_id.pop_front() {
                                in_flight.insert(pkid, sent);
                            }
                        }
                        Ok(Event::Incoming(Packet::PubAck(ack))) => {
                            if let Some(sent) = in_flight.remove(&ack.pkid) {
                                self.status.published.fetch_add(1, Ordering::Relaxed);
                                if let Some((key, version)) = sent {
                                    if acked.len() >= ACKED_KEPT {
                                        // Only a cache against sending twice: dropping it costs
                                        // duplicates, never records.
                                        acked.clear();
                                    }
                                    acked.insert(key.clone(), version.clone());
                                    if jobs.send(Job::Acknowledged(key, version)).await.is_err() {
                                        return self.store_thread_gone();
                                    }
                                }
                            }
                            self.fill_window(&client, &mut waiting_id, &in_flight, &mut cursor, &mut acked, &jobs, hold);
                        }
                        Ok(Event::Incoming(Packet::Publish(p))) if p.topic == sync_topic => {
                            // Our marker behind shard k's retained records: all of them are in.
                            let text = String::from_utf8_lossy(&p.payload);
                            let Some((n, k)) = text.split_once(' ') else { continue };
                            if n.parse() != Ok(nonce) {
                                continue;
                            }
                            // Each shard asked for counts once (a marker replayed by someone on
                            // the broker cannot end the catch-up early).
                            match k.parse::<usize>() {
                                Ok(k) if outstanding.remove(&k) => {}
                                _ => continue,
                            }
                            shards_done += 1;
                            last_marker = Instant::now();
                            if shards_done == fleet::SHARDS {
                                if jobs.send(Job::SyncDone).await.is_err() {
                                    return self.store_thread_gone();
                                }
                                self.status.synced.store(true, Ordering::Relaxed);
                                hold = false;
                                let ms = sync_started.elapsed().as_millis() as u64;
                                self.status.sync_ms.store(ms, Ordering::Relaxed);
                                tracing::info!(took_ms = ms, records = records_since_connect,
                                    "fleet link in sync with the broker's retained state");
                                self.fill_window(&client, &mut waiting_id, &in_flight, &mut cursor, &mut acked, &jobs, hold);
                                continue;
                            }
                            // Several shards at once while they are small (each takes a
                            // round trip), one at a time once one would fill a broker's queue.
                            let per_shard = records_since_connect / shards_done as u64;
                            let window = (SHARD_RECORDS_AT_ONCE / per_shard.max(1)).clamp(1, 32) as usize;
                            let mut failed = None;
                            while failed.is_none() && shards_asked < fleet::SHARDS && outstanding.len() < window {
                                match self.take_shard(&client, nonce, shards_asked, &mut waiting_id) {
                                    Ok(()) => {
                                        outstanding.insert(shards_asked);
                                        shards_asked += 1;
                                    }
                                    Err(e) => failed = Some(e),
                                }
                            }
                            if let Some(e) = failed {
                                break format!("cannot subscribe: {e}");
                            }
                        }
                        Ok(Event::Incoming(Packet::Publish(p))) if p.topic.starts_with(&device_prefix) => {
                            self.note_device(&p.payload);
                        }
                        Ok(Event::Incoming(Packet::Publish(p))) => {
                            records_since_connect += 1;
                            self.status.bytes_received.fetch_add(p.payload.len() as u64, Ordering::Relaxed);
                            // An empty retained message is a cleared topic (an expired tombstone).
                            if !p.payload.is_empty()
                                && jobs.send(Job::Received(p.topic.clone(), p.payload.to_vec())).await.is_err()
                            {
                                return self.store_thread_gone();
                            }
                        }
                        Ok(_) => {}
                        Err(e) => break e.to_string(),
                    }
                }
            };
            if connected {
                tracing::warn!(error = %error, retry_in = ?backoff, "fleet link lost");
            } else {
                tracing::debug!(error = %error, retry_in = ?backoff, "fleet link: broker unreachable");
            }
            self.status.connected.store(false, Ordering::Relaxed);
            self.status.synced.store(false, Ordering::Relaxed);
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.clone().requested() => return,
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Publish (retained) which model this appliance embeds with and its public key.
    fn announce(
        &self,
        client: &AsyncClient,
        waiting_id: &mut VecDeque<Sent>,
    ) -> Result<(), rumqttc::ClientError> {
        let me = DeviceAnnouncement {
            device_id: self.status.device_id.clone(),
            model: self.store.model().id.clone(),
            public_key: facegate_core::access::device_key::public_key_text(
                &self.key.verifying_key(),
            ),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        };
        client.try_publish(
            device_topic(&self.base, &me.device_id),
            QoS::AtLeastOnce,
            true,
            serde_json::to_vec(&me).unwrap_or_default(),
        )?;
        waiting_id.push_back(None);
        Ok(())
    }

    /// Keep another appliance's announcement; say so once when its model is not ours.
    fn note_device(&self, payload: &[u8]) {
        let Ok(d) = serde_json::from_slice::<DeviceAnnouncement>(payload) else {
            return;
        };
        let ours = &self.store.model().id;
        let previous = self
            .status
            .devices
            .lock()
            .unwrap()
            .insert(d.device_id.clone(), d.model.clone());
        if d.model != *ours && previous.as_ref() != Some(&d.model) {
            tracing::error!(device = %d.device_id, their_model = %d.model, our_model = %ours,
                "an appliance of the fleet embeds with another model: its records are refused \
                 here and ours there (set the same inference.embedder and inference.precision \
                 on every appliance of the site)");
        }
    }

    /// This appliance's marker topic: never retained, subscribed by this appliance only.
    fn sync_topic(&self) -> String {
        format!("{}/sync/{}", self.base, self.status.device_id)
    }

    /// Subscribe to shard `k`'s person records, then publish a marker that reaches us behind
    /// the retained records the subscription brings (the broker queues both in order).
    fn take_shard(
        &self,
        client: &AsyncClient,
        nonce: u64,
        k: usize,
        waiting_id: &mut VecDeque<Sent>,
    ) -> Result<(), rumqttc::ClientError> {
        client.try_subscribe(fleet::shard_filter(&self.base, k), QoS::AtLeastOnce)?;
        client.try_publish(
            self.sync_topic(),
            QoS::AtLeastOnce,
            false,
            format!("{nonce} {k}"),
        )?;
        waiting_id.push_back(None);
        Ok(())
    }

    /// Publish queued records after `cursor`, up to the window. With nothing in flight, the
    /// scan starts again from the first key, so that a register queued again behind the
    /// cursor (changed while its record was in flight) goes out too.
    // The connection's bookkeeping, passed apart so that the select! arms can borrow it.
    #[allow(clippy::too_many_arguments)]
    fn fill_window(
        &self,
        client: &AsyncClient,
        waiting_id: &mut VecDeque<Sent>,
        in_flight: &HashMap<u16, Sent>,
        cursor: &mut Option<Vec<u8>>,
        acked: &mut HashMap<Vec<u8>, Version>,
        jobs: &tokio::sync::mpsc::Sender<Job>,
        hold: bool,
    ) {
        if hold {
            return;
        }
        let busy = waiting_id.len() + in_flight.len();
        if busy == 0 {
            *cursor = None;
        }
        let room = WINDOW.saturating_sub(busy);
        if room == 0 {
            return;
        }
        let queued = match self.store.pending_records(cursor.as_deref(), room) {
            Ok(q) => q,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the fleet's queued records");
                return;
            }
        };
        for (key, version) in queued {
            *cursor = Some(key.clone());
            if acked.get(&key) == Some(&version) {
                continue;
            }
            let (payload, Some((collection, person))) =
                (self.payload(&key), split_register_key(&key))
            else {
                continue;
            };
            let payload = match payload {
                Ok(Some(p)) => p,
                // Never publishable (gone, or too large: logged): out of the queue, or it would
                // be read again on every pass.
                Ok(None) => {
                    let _ = jobs.try_send(Job::Acknowledged(key.clone(), version.clone()));
                    acked.insert(key, version);
                    continue;
                }
                // A read error: tried again on the next pass.
                Err(()) => continue,
            };
            let topic = fleet::topic(&self.base, &collection, person.as_deref());
            if client
                .try_publish(topic, QoS::AtLeastOnce, true, payload)
                .is_err()
            {
                *cursor = None;
                return;
            }
            waiting_id.push_back(Some((key, version)));
        }
    }

    /// The sealed record of a register, without thumbnails when it would not fit a packet.
    fn payload(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ()> {
        let device = self.status.device_id.as_str();
        let build = |thumbnails: bool| -> Result<Option<(Record, Vec<u8>)>, ()> {
            match self.store.outgoing_record(key, thumbnails) {
                Ok(Some(r)) => {
                    let sealed = fleet::seal(&r, device, &self.key);
                    Ok(Some((r, sealed)))
                }
                Ok(None) => Ok(None),
                Err(e) => {
                    tracing::error!(error = %e, "cannot read a queued fleet record");
                    Err(())
                }
            }
        };
        let topic_room = 256 + key.len() * 3;
        let Some((record, mut payload)) = build(self.thumbnails)? else {
            return Ok(None);
        };
        if publish_packet_size("", payload.len()) + topic_room > self.max_packet {
            let Some((_, smaller)) = build(false)? else {
                return Ok(None);
            };
            payload = smaller;
        }
        if publish_packet_size("", payload.len()) + topic_room > self.max_packet {
            tracing::error!(collection = %record.collection, person_id = ?record.person_id,
                bytes = payload.len(), "a fleet record is larger than mqtt.max_packet_kib: not replicated");
            return Ok(None);
        }
        Ok(Some(payload))
    }

    /// The store thread is gone (it panicked): say so, and stop.
    fn store_thread_gone(&self) {
        tracing::error!("the fleet's store thread has stopped: replication is off until restart");
        self.status.connected.store(false, Ordering::Relaxed);
    }

    /// Forget old tombstones and clear their retained records on the broker.
    /// Returns whether there may be more (at most a window's worth is cleared at a time, so
    /// that every clear fits the client's queue).
    async fn expire(&self, client: &AsyncClient, waiting_id: &mut VecDeque<Sent>) -> bool {
        let store = self.store.clone();
        let age = self.tombstone_ms;
        let expired =
            tokio::task::spawn_blocking(move || store.expire_tombstones(now_ms(), age, WINDOW));
        let gone = match expired.await {
            Ok(Ok(g)) => g,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot expire the fleet's tombstones");
                return false;
            }
            Err(_) => return false,
        };
        let more = gone.len() == WINDOW;
        for (collection, person) in gone {
            let topic = fleet::topic(&self.base, &collection, person.as_deref());
            if client
                .try_publish(topic, QoS::AtLeastOnce, true, Vec::<u8>::new())
                .is_ok()
            {
                waiting_id.push_back(None);
                self.status.cleared.fetch_add(1, Ordering::Relaxed);
            }
        }
        more
    }
}

/// The store thread: apply received records in batches, clear acknowledged ones.
fn apply_loop(
    mut jobs: tokio::sync::mpsc::Receiver<Job>,
    store: &Store,
    status: &FleetStatus,
    trusted: &Trusted,
    base: &str,
    tombstone_ms: i64,
    requeue: &tokio::sync::mpsc::UnboundedSender<Option<Vec<u8>>>,
) {
    let mut warned: std::collections::HashSet<String> = Default::default();
    // While a connection takes the retained state: when it started, and the registers seen.
    let mut sync: Option<(i64, std::collections::HashSet<Vec<u8>>)> = None;
    while let Some(first) = jobs.blocking_recv() {
        if warned.len() > 1_000 {
            // Said once per kind, but not remembered without bound (a hostile publisher).
            warned.clear();
        }
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut records = Vec::new();
        let mut acknowledged = Vec::new();
        for job in batch {
            match job {
                Job::SyncStarted(at) => sync = Some((at, Default::default())),
                Job::InSync => {
                    if let Err(e) = store.note_in_sync() {
                        tracing::error!(error = %e, "cannot record the fleet's sync time");
                    }
                }
                Job::SyncDone => {
                    // The records of the sync still in `records` are applied first.
                    apply(
                        store,
                        status,
                        &mut warned,
                        std::mem::take(&mut records),
                        requeue,
                    );
                    if let Some((started, seen)) = sync.take() {
                        reconcile(store, &seen, started, tombstone_ms, requeue);
                    }
                }
                Job::Acknowledged(key, version) => acknowledged.push((key, version)),
                Job::Received(topic, payload) => {
                    match Sealed::parse(&payload).and_then(|s| s.open(trusted)) {
                        // A signed record copied to another topic (which its deletion would
                        // never overwrite) is not taken.
                        Ok(record)
                            if topic
                                != fleet::topic(
                                    base,
                                    &record.collection,
                                    record.person_id.as_deref(),
                                ) =>
                        {
                            status.count("wrong_topic");
                            if warned.insert(format!("topic {topic}")) {
                                tracing::warn!(%topic, "fleet record on a topic that is not its own refused");
                            }
                        }
                        Ok(record) => {
                            if let Some((_, seen)) = &mut sync {
                                seen.insert(register_key(
                                    &record.collection,
                                    record.person_id.as_deref(),
                                ));
                            }
                            records.push(record);
                        }
                        Err(e) => {
                            status.count(e.label());
                            let what = e.to_string();
                            if warned.insert(what.clone()) {
                                tracing::warn!(refused = %what, "fleet record refused");
                            }
                        }
                    }
                }
            }
        }
        apply(store, status, &mut warned, records, requeue);
        if let Err(e) = store.records_published(&acknowledged) {
            tracing::error!(error = %e, "cannot clear acknowledged fleet records");
        }
    }
}

/// Apply verified records in one transaction and count what became of them.
fn apply(
    store: &Store,
    status: &FleetStatus,
    warned: &mut std::collections::HashSet<String>,
    records: Vec<Record>,
    requeue: &tokio::sync::mpsc::UnboundedSender<Option<Vec<u8>>>,
) {
    if records.is_empty() {
        return;
    }
    let outcomes = match store.apply_records_requeuing(&records) {
        Ok((o, requeued)) => {
            for key in requeued {
                let _ = requeue.send(Some(key));
            }
            o
        }
        // One at a time, so that one record the store cannot take does not hold back the
        // others; that one is left to the next connection's retained state.
        Err(e) if records.len() > 1 => {
            tracing::warn!(error = %e, records = records.len(), "a batch of fleet records failed; applying them one by one");
            for r in records {
                apply(store, status, warned, vec![r], requeue);
            }
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, collection = %records[0].collection,
                person_id = ?records[0].person_id, "cannot apply a fleet record");
            status.count("failed");
            return;
        }
    };
    let applied_at = now_ms();
    for (record, outcome) in records.iter().zip(&outcomes) {
        status.count(outcome.label());
        match outcome {
            Applied::Applied => {
                let mut peers = status.peers.lock().unwrap();
                let peer = peers
                    .entry(record.version.device.clone())
                    .or_insert_with(|| PeerStatus {
                        last_version: record.version.clone(),
                        applied_at_ms: applied_at,
                        lag_ms: 0,
                        applied: 0,
                    });
                peer.applied += 1;
                if record.version >= peer.last_version {
                    peer.last_version = record.version.clone();
                }
                peer.applied_at_ms = applied_at;
                peer.lag_ms = applied_at.saturating_sub(record.version.wall_ms);
            }
            Applied::WrongModel(model) => {
                status
                    .foreign_models
                    .lock()
                    .unwrap()
                    .insert(record.version.device.clone(), model.clone());
                if warned.insert(format!("model {model}")) {
                    tracing::error!(device = %record.version.device, their_model = %model,
                            our_model = %store.model().id,
                            "fleet records of another embedding model refused: every appliance \
                             of the site must embed with the same model (inference.embedder and \
                             inference.precision)");
                }
            }
            Applied::Invalid(why) if warned.insert(why.clone()) => {
                tracing::warn!(device = %record.version.device, why = %why, "invalid fleet record refused");
            }
            _ => {}
        }
    }
}

/// After a full sync: publish again what the broker lacks, or delete what was deleted while
/// this appliance was away (store::replication::Store::reconcile_after_sync).
fn reconcile(
    store: &Store,
    seen: &std::collections::HashSet<Vec<u8>>,
    started: i64,
    tombstone_ms: i64,
    requeue: &tokio::sync::mpsc::UnboundedSender<Option<Vec<u8>>>,
) {
    match store.reconcile_after_sync(seen, started, tombstone_ms) {
        Ok(r) if r.held > 0 => tracing::error!(
            held = r.held,
            "fleet: the last full sync is older than fleet.tombstone_days and the broker lacks \
             most of this gallery (a broker that lost its store?): nothing deleted or published; \
             see docs/fleet.md, \"What an operator does\""
        ),
        Ok(r) => {
            if !r.queued.is_empty() || r.deleted > 0 {
                tracing::warn!(
                    queued = r.queued.len(),
                    deleted = r.deleted,
                    "fleet: after a full sync, registers the broker did not hold were published \
                     again (a broker that lost its retained state), or deleted here (deleted \
                     elsewhere while this appliance was away longer than fleet.tombstone_days)"
                );
            }
            if !r.queued.is_empty() {
                let _ = requeue.send(None);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot reconcile the gallery with the broker's state")
        }
    }
}
