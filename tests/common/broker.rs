//! A real mosquitto broker on an ephemeral loopback port, started and stopped by the tests,
//! and an MQTT subscriber that records what it receives.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use facegate_tools::local_broker::LocalBroker;
use rumqttc::{Client, Event, MqttOptions, Packet, QoS};

/// mosquitto on an ephemeral loopback port.
pub struct Broker(LocalBroker);

impl Broker {
    /// Start mosquitto in `dir` (its config and, with `persistent`, its session store).
    pub fn start(dir: &Path, persistent: bool) -> Broker {
        Broker(LocalBroker::start(dir, 0, persistent).expect("mosquitto starts"))
    }

    /// As `start`, with extra lines of mosquitto config.
    pub fn start_with(dir: &Path, extra: &str) -> Broker {
        Broker(LocalBroker::start_with(dir, 0, false, extra).expect("mosquitto starts"))
    }

    pub fn port(&self) -> u16 {
        self.0.port
    }

    /// SIGTERM (mosquitto saves its sessions) and wait.
    pub fn stop(&mut self) {
        self.0.stop();
    }

    /// Start again on the same port.
    pub fn restart(&mut self) {
        self.0.restart().expect("mosquitto restarts");
    }
}

#[derive(Debug, Clone)]
pub struct Received {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).unwrap_or(serde_json::Value::Null)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// Records every message on `filter`. With `persistent` it keeps a broker session (fixed
/// client id, clean_session false), so messages published while it is reconnecting are
/// delivered when it is back.
#[derive(Clone)]
pub struct Subscriber {
    pub messages: Arc<Mutex<Vec<Received>>>,
}

impl Subscriber {
    pub fn start(port: u16, client_id: &str, filter: &str, persistent: bool) -> Subscriber {
        let mut opts = MqttOptions::new(client_id, "127.0.0.1", port);
        opts.set_clean_session(!persistent);
        opts.set_keep_alive(Duration::from_secs(5));
        opts.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut connection) = Client::new(opts, 100);
        let messages = Arc::new(Mutex::new(Vec::new()));
        let sink = messages.clone();
        let filter = filter.to_owned();
        let subscribed = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let flag = subscribed.clone();
        std::thread::spawn(move || loop {
            match connection.recv_timeout(Duration::from_millis(500)) {
                Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                    let _ = client.try_subscribe(filter.clone(), QoS::AtLeastOnce);
                }
                Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => {
                    *flag.0.lock().unwrap() = true;
                    flag.1.notify_all();
                }
                Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                    sink.lock().unwrap().push(Received {
                        topic: p.topic.clone(),
                        payload: p.payload.to_vec(),
                        retain: p.retain,
                    });
                }
                Ok(Ok(_)) => {}
                Ok(Err(_)) => std::thread::sleep(Duration::from_millis(200)),
                Err(_) => {}
            }
        });
        let (lock, cv) = &*subscribed;
        let (done, _) = cv
            .wait_timeout_while(lock.lock().unwrap(), Duration::from_secs(10), |s| !*s)
            .unwrap();
        assert!(*done, "the test subscriber could not subscribe");
        Subscriber { messages }
    }

    pub fn on(&self, topic: &str) -> Vec<Received> {
        self.messages
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.topic == topic)
            .cloned()
            .collect()
    }

    /// Wait until `pred` holds for the messages received so far.
    pub fn wait_for(&self, timeout: Duration, what: &str, pred: impl Fn(&[Received]) -> bool) {
        let deadline = Instant::now() + super::patience(timeout);
        loop {
            if pred(&self.messages.lock().unwrap()) {
                return;
            }
            if Instant::now() > deadline {
                let got: Vec<String> = self
                    .messages
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|m| {
                        format!(
                            "{} {}",
                            m.topic,
                            m.text().chars().take(160).collect::<String>()
                        )
                    })
                    .collect();
                panic!(
                    "timed out waiting for {what}; received:\n{}",
                    got.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Publish one message at QoS 1 on a connection of its own and wait for the broker's PUBACK.
pub fn publish(port: u16, topic: &str, payload: &[u8]) {
    let id = format!("test-pub-{}", fastrand_id());
    let mut opts = MqttOptions::new(id, "127.0.0.1", port);
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut connection) = Client::new(opts, 10);
    client
        .publish(topic, QoS::AtLeastOnce, false, payload.to_vec())
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "no PUBACK for {topic}");
        match connection.recv_timeout(Duration::from_millis(500)) {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => break,
            Ok(Err(e)) => panic!("cannot publish {topic}: {e}"),
            _ => {}
        }
    }
    let _ = client.disconnect();
    for _ in 0..10 {
        if connection.recv_timeout(Duration::from_millis(100)).is_err() {
            break;
        }
    }
}

/// A client id suffix unique within this process.
fn fastrand_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    u64::from(std::process::id()) << 20 | NEXT.fetch_add(1, Ordering::Relaxed)
}
