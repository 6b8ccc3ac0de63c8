//! The cost of trusting the door (`facegate bench pipeline`, after the camera runs): signing
//! one access message, and a door controller on the same machine from PUBLISH to the relay
//! line closing, through the same mosquitto.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ed25519_dalek::SigningKey;
use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde::Serialize;

use super::{err, BenchError};
use facegate_core::access::device_key::public_key_text;
use facegate_core::access::message::AccessMessage;
use facegate_core::clock::{rfc3339, unix_ms, SystemClock};
use facegate_core::config::Config;
use facegate_daemon::daemon::shutdown;
use facegate_daemon::door::relay::{Backend, FakeLine};
use facegate_daemon::door::Controller;

#[derive(Debug, Clone, Serialize)]
pub struct DoorBench {
    /// Median time to sign one access message (canonical encoding and Ed25519), µs.
    pub signing_us: f64,
    /// Median time to append one decision to the event log (event, access message and a
    /// 160 px thumbnail; one synced LMDB commit), µs, and its 99th percentile.
    pub audit_write_us: f64,
    pub audit_write_p99_us: f64,
    /// Grants published to the controller.
    pub grants: usize,
    /// Grants that closed the relay.
    pub opened: usize,
    /// PUBLISH written by the sender → the relay line set active, median and 99th percentile.
    pub publish_to_relay_p50_ms: f64,
    pub publish_to_relay_p99_ms: f64,
}

fn grant(sequence: u64, key: &SigningKey) -> AccessMessage {
    let now = unix_ms(SystemTime::now());
    let mut m = AccessMessage {
        device_id: "bench".into(),
        door: "bench-door".into(),
        granted: true,
        person_id: Some("p1".into()),
        person_name: Some("Enrolled".into()),
        reason: "match".into(),
        event_id: uuid::Uuid::now_v7().to_string(),
        sequence,
        issued_at: rfc3339(now),
        expires_at: rfc3339(now + 3000),
        ts: rfc3339(now),
        signature: String::new(),
    };
    m.sign(key);
    m
}

/// Median signing time over 2,000 messages, after 200 to warm up.
fn signing_us(key: &SigningKey) -> f64 {
    let mut m = grant(1, key);
    let mut samples = Vec::with_capacity(2000);
    for i in 0..2200 {
        m.sequence = i;
        let t = Instant::now();
        m.sign(key);
        if i >= 200 {
            samples.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    super::percentiles(&mut samples).0
}

/// Append 500 decisions like the camera's (after 20 to warm up) to a fresh event log in `dir`.
fn audit_write_us(dir: &std::path::Path, key: &SigningKey) -> Result<(f64, f64), BenchError> {
    let log =
        facegate_core::audit::EventLog::open(dir, 100_000, 90, 256).map_err(err("event log"))?;
    let thumbnail = vec![0x5au8; 6 * 1024];
    let mut samples = Vec::with_capacity(500);
    for i in 0..520u64 {
        let access = serde_json::to_value(grant(i + 1, key)).unwrap_or_default();
        let event = serde_json::json!({
            "event_id": access["event_id"], "sequence": i + 1, "type": "match",
            "ts": access["issued_at"], "device_id": "bench", "camera": "bench",
            "collection": "bench", "person_id": "p1", "person_name": "Enrolled",
            "metadata": {}, "similarity_score": 0.93, "door": "bench-door", "granted": true,
            "access_reason": "match", "reasons": ["p1 scored 0.930 >= 0.7"],
        });
        let entry = facegate_core::audit::Entry {
            event,
            access: Some(access),
            thumbnail: Some(thumbnail.clone()),
            published: true,
        };
        let t = Instant::now();
        log.append(&entry, unix_ms(SystemTime::now()))
            .map_err(err("event log append"))?;
        if i >= 20 {
            samples.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    Ok(super::percentiles(&mut samples))
}

/// `grants` grants, one every 100 ms (the 50 ms pulse ends in between), to a controller on a
/// fake line, through the broker on `port`.
pub async fn bench_door(
    port: u16,
    dir: &std::path::Path,
    grants: usize,
) -> Result<DoorBench, BenchError> {
    let key = SigningKey::from_bytes(&[42; 32]);
    let signing_us = signing_us(&key);
    let (audit_write_us, audit_write_p99_us) = audit_write_us(&dir.join("events"), &key)?;
    let mut config = Config::default();
    config.mqtt.port = port;
    config.mqtt.device_id = "bench-lock".into();
    config.mqtt.homeassistant = false;
    config.door.name = "bench-door".into();
    config.door.pulse_s = 0.05;
    config
        .door
        .trusted_keys
        .insert("bench".into(), public_key_text(&key.verifying_key()));
    let controller = Controller::from_config(&config, dir, Arc::new(SystemClock))
        .map_err(err("door controller"))?;
    let line = FakeLine::default();
    let (stop, stop_rx) = shutdown::channel();
    let task = tokio::spawn(controller.run(Backend::Line(Box::new(line.clone())), stop_rx));
    let mut opts = MqttOptions::new("bench-door-sender", "127.0.0.1", port);
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut eventloop) = AsyncClient::new(opts, 16);
    let sent: Arc<std::sync::Mutex<Vec<Instant>>> = Arc::default();
    let sent_at = sent.clone();
    let poller = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(rumqttc::Event::Outgoing(rumqttc::Outgoing::Publish(_))) => {
                    sent_at.lock().unwrap().push(Instant::now());
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    // Let the controller connect and subscribe.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let topic = facegate_daemon::mqtt::Topics::new("facegate", "bench").access("bench-door");
    let mut latencies = Vec::with_capacity(grants);
    for i in 0..grants {
        let payload = serde_json::to_vec(&grant(i as u64 + 1, &key)).unwrap_or_default();
        client
            .publish(topic.clone(), QoS::AtLeastOnce, false, payload)
            .await
            .map_err(err("publish"))?;
        let deadline = Instant::now() + Duration::from_secs(2);
        while line.activations().len() <= i && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if let (Some(opened), Some(published)) = (
            line.activations().get(i).copied(),
            sent.lock().unwrap().get(i).copied(),
        ) {
            latencies.push(opened.saturating_duration_since(published).as_secs_f64() * 1000.0);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.request();
    let _ = task.await;
    poller.abort();
    let opened = line.activations().len();
    let (p50, p99) = super::percentiles(&mut latencies);
    Ok(DoorBench {
        signing_us,
        audit_write_us,
        audit_write_p99_us,
        grants,
        opened,
        publish_to_relay_p50_ms: p50,
        publish_to_relay_p99_ms: p99,
    })
}
