//! `facegate door`, the door controller, against a real mosquitto: signed grants pulse a fake
//! GPIO line (behind the same trait as the real one); forged, replayed, stale and reordered
//! messages do not, and each refusal is published with its reason; the controller rides out a
//! broker restart and remembers the sequences it accepted across its own restart.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use common::broker::{publish, Broker, Received, Subscriber};
use ed25519_dalek::SigningKey;
use facegate_core::access::device_key::public_key_text;
use facegate_core::access::message::AccessMessage;
use facegate_core::clock::{rfc3339, unix_ms, SystemClock};
use facegate_core::config::Config;
use facegate_daemon::daemon::shutdown;
use facegate_daemon::door::relay::{Backend, FakeLine};
use facegate_daemon::door::Controller;
use serde_json::Value;

const ACCESS: &str = "facegate/gate/main/access";
const STATE: &str = "facegate/lockbox/main/state";
const AVAILABILITY: &str = "facegate/lockbox/main/controller";

fn appliance_key() -> SigningKey {
    SigningKey::from_bytes(&[11; 32])
}

/// A controller for door `main` of device `lockbox`, trusting appliance `gate`, on a fake
/// line, in a thread of its own.
struct Door {
    stop: shutdown::Sender,
    thread: Option<std::thread::JoinHandle<()>>,
    line: FakeLine,
}

impl Door {
    fn start(port: u16, state_dir: &Path) -> Door {
        let mut config = Config::default();
        config.mqtt.port = port;
        config.mqtt.device_id = "lockbox".into();
        config.mqtt.keep_alive_s = 5;
        config.door.name = "main".into();
        config.door.pulse_s = 0.2;
        config.door.trusted_keys.insert(
            "gate".into(),
            public_key_text(&appliance_key().verifying_key()),
        );
        config.validate().unwrap();
        let controller =
            Controller::from_config(&config, state_dir, Arc::new(SystemClock)).unwrap();
        let line = FakeLine::default();
        let backend = Backend::Line(Box::new(line.clone()));
        let (stop, stop_rx) = shutdown::channel();
        let thread = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(controller.run(backend, stop_rx))
                .unwrap();
        });
        Door {
            stop,
            thread: Some(thread),
            line,
        }
    }

    fn stop(mut self) {
        self.stop.request();
        self.thread.take().unwrap().join().unwrap();
    }
}

/// An access message of appliance `gate` for door `main`, issued now, signed with `key`.
fn message(sequence: u64, granted: bool, key: &SigningKey) -> AccessMessage {
    let now = unix_ms(SystemTime::now());
    let mut m = AccessMessage {
        device_id: "gate".into(),
        door: "main".into(),
        granted,
        person_id: Some("alice".into()),
        person_name: Some("Alice".into()),
        reason: if granted { "match" } else { "outside_schedule" }.into(),
        event_id: format!("event-{sequence}"),
        sequence,
        issued_at: rfc3339(now),
        expires_at: rfc3339(now + 3000),
        ts: rfc3339(now),
        signature: String::new(),
    };
    m.sign(key);
    m
}

fn send(port: u16, m: &AccessMessage) {
    publish(port, ACCESS, &serde_json::to_vec(m).unwrap());
}

/// The outcomes published on the state topic in `received`, each once (the state is
/// published again with the same last outcome when the lock changes).
fn outcomes_in(received: &[Received]) -> Vec<Value> {
    let mut all: Vec<Value> = received
        .iter()
        .filter(|m| m.topic == STATE)
        .map(|m| m.json()["last"].clone())
        .filter(|l| !l.is_null())
        .collect();
    all.dedup();
    all
}

fn outcomes(sub: &Subscriber) -> Vec<Value> {
    outcomes_in(&sub.on(STATE))
}

/// Wait for the `n`-th outcome and return it.
fn nth_outcome(sub: &Subscriber, n: usize) -> Value {
    sub.wait_for(
        Duration::from_secs(10),
        "an outcome on the state topic",
        |m| outcomes_in(m).len() >= n,
    );
    outcomes(sub)[n - 1].clone()
}

fn wait_online(sub: &Subscriber, times: usize) {
    sub.wait_for(Duration::from_secs(20), "the controller online", |m| {
        m.iter()
            .filter(|m| m.topic == AVAILABILITY && m.text() == "online")
            .count()
            >= times
    });
}

#[test]
fn a_signed_fresh_grant_pulses_the_relay_and_forged_replayed_stale_and_reordered_ones_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("broker"), false);
    let port = broker.port();
    let sub = Subscriber::start(port, "watch", "facegate/lockbox/#", false);
    let door = Door::start(port, dir.path());
    wait_online(&sub, 1);
    let key = appliance_key();
    let mut n = 0;
    let mut expect = |sent: &dyn Fn(), result: &str, reason: &str| {
        sent();
        n += 1;
        let o = nth_outcome(&sub, n);
        assert_eq!(
            (o["result"].as_str(), o["reason"].as_str()),
            (Some(result), Some(reason)),
            "{o}"
        );
        o
    };

    let grant = message(10, true, &key);
    let sent_at = Instant::now();
    let o = expect(&|| send(port, &grant), "opened", "match");
    assert_eq!(o["person_id"], "alice");
    assert_eq!(o["sequence"], 10);
    assert_eq!(door.line.activations().len(), 1);
    assert!(door.line.activations()[0] > sent_at);

    // Forged: signed by another key, or a signed message with a field altered.
    let wrong_key = message(11, true, &SigningKey::from_bytes(&[12; 32]));
    expect(&|| send(port, &wrong_key), "refused", "bad_signature");
    let mut altered = message(12, true, &key);
    altered.person_id = Some("mallory".into());
    expect(&|| send(port, &altered), "refused", "bad_signature");
    let mut extended = message(13, true, &key);
    extended.expires_at = rfc3339(unix_ms(SystemTime::now()) + 3_600_000);
    expect(&|| send(port, &extended), "refused", "bad_signature");
    let mut other_device = message(14, true, &SigningKey::from_bytes(&[13; 32]));
    other_device.device_id = "intruder".into();
    other_device.sign(&SigningKey::from_bytes(&[13; 32]));
    expect(&|| send(port, &other_device), "refused", "untrusted_device");
    expect(
        &|| publish(port, ACCESS, b"{\"granted\": true}"),
        "refused",
        "malformed",
    );

    // Replayed: the very bytes of the first grant again.
    expect(&|| send(port, &grant), "refused", "replayed");

    // Stale: genuine, but its time is up (delayed 10 s, beyond the 2 s skew).
    let mut stale = message(20, true, &key);
    let then = unix_ms(SystemTime::now()) - 10_000;
    stale.issued_at = rfc3339(then);
    stale.ts = rfc3339(then);
    stale.expires_at = rfc3339(then + 3000);
    stale.sign(&key);
    expect(&|| send(port, &stale), "refused", "expired");

    // Reordered: 31 arrives before 30; 30 is then older than what was accepted. (The first
    // pulse is over: a grant during a pulse would extend it instead of pulsing again.)
    let deadline = Instant::now() + Duration::from_secs(5);
    while door.line.is_active() {
        assert!(Instant::now() < deadline, "the first pulse never ended");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (m30, m31) = (message(30, true, &key), message(31, true, &key));
    expect(&|| send(port, &m31), "opened", "match");
    expect(&|| send(port, &m30), "refused", "replayed");

    // A genuine denial keeps the door shut.
    let denial = message(32, false, &key);
    expect(&|| send(port, &denial), "denied", "outside_schedule");

    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(
        door.line.activations().len(),
        2,
        "only the two genuine fresh grants pulsed the relay"
    );
    assert!(!door.line.is_active(), "the pulse ended");
    // The lock state went unlocked and back for Home Assistant.
    let locks: Vec<String> = sub
        .on(STATE)
        .iter()
        .map(|m| m.json()["lock"].as_str().unwrap().to_owned())
        .collect();
    assert!(locks.contains(&"unlocked".to_string()), "{locks:?}");
    assert_eq!(locks.last().map(String::as_str), Some("locked"));
    door.stop();
}

#[test]
fn the_controller_rides_out_a_broker_restart_and_remembers_accepted_sequences_across_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(&dir.path().join("broker"), false);
    let port = broker.port();
    let sub = Subscriber::start(port, "watch", "#", false);
    let door = Door::start(port, dir.path());
    wait_online(&sub, 1);
    let discovery = "homeassistant/binary_sensor/facegate_lockbox/main_lock/config";
    sub.wait_for(Duration::from_secs(10), "Home Assistant discovery", |m| {
        m.iter().any(|m| m.topic == discovery)
    });
    let ha = sub.on(discovery)[0].json();
    assert_eq!(ha["device_class"], "lock", "{ha}");
    assert!(
        ha.get("command_topic").is_none(),
        "read-only: no way to open from HA"
    );
    let key = appliance_key();
    send(port, &message(5, true, &key));
    assert_eq!(nth_outcome(&sub, 1)["result"], "opened");

    broker.stop();
    broker.restart();
    // The controller reconnects, subscribes again and says it is online.
    wait_online(&sub, 2);
    let grant = message(6, true, &key);
    send(port, &grant);
    assert_eq!(nth_outcome(&sub, 2)["sequence"], 6);
    assert_eq!(door.line.activations().len(), 2);
    door.stop();

    // Restarted, it still refuses what it accepted before.
    let door = Door::start(port, dir.path());
    wait_online(&sub, 3);
    let before = outcomes(&sub).len();
    send(port, &grant);
    let o = nth_outcome(&sub, before + 1);
    assert_eq!(
        (o["result"].as_str(), o["reason"].as_str()),
        (Some("refused"), Some("replayed")),
        "{o}"
    );
    send(port, &message(7, true, &key));
    assert_eq!(nth_outcome(&sub, before + 2)["result"], "opened");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(door.line.activations().len(), 1);
    door.stop();
    let saved = std::fs::read_to_string(dir.path().join("door-main.sequences")).unwrap();
    assert_eq!(saved, "{\"gate\":7}");
}

#[test]
fn a_face_at_the_camera_opens_the_door_through_facegate_serve_and_facegate_door() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Enrolling runs `facegate serve` once: that creates the appliance's key.
    common::cameras::enrol_obama(&data);
    let key = facegate_core::access::device_key::load(&data.join("access-signing.key")).unwrap();
    let broker = Broker::start(&dir.path().join("broker"), false);
    let sub = Subscriber::start(broker.port(), "watch", "facegate/#", false);
    let opened = dir.path().join("opened");
    let door_config = dir.path().join("door.toml");
    std::fs::write(
        &door_config,
        format!(
            "[mqtt]\nport = {}\ndevice_id = \"lockbox\"\n\n[door]\nname = \"main\"\n\
             relay = \"command\"\npulse_s = 0.2\n\
             command = [\"sh\", \"-c\", \"echo \\\"$FACEGATE_PERSON_ID $FACEGATE_EVENT_ID\\\" >> {}\"]\n\n\
             [door.trusted_keys]\ngate = \"{}\"\n",
            broker.port(),
            opened.display(),
            public_key_text(&key.verifying_key())
        ),
    )
    .unwrap();
    let mut door = common::facegate_command()
        .arg("--config")
        .arg(&door_config)
        .args(["door", "--data-dir"])
        .arg(dir.path().join("door"))
        .env("FACEGATE_LOG", "warn")
        .spawn()
        .unwrap();
    wait_online(&sub, 1);
    let frames = common::cameras::scene_folder(dir.path(), &["obama2.jpg"], 12, 4);
    let camera = format!(
        "[inference]\nembedder = \"dlib128\"\n[mqtt]\nenabled = true\nport = {}\n\
         device_id = \"gate\"\n[[cameras]]\nname = \"front\"\nsource = \"replay\"\npath = \"{}\"\n\
         fps = {:.2}\nreplay_loop = false\ncollection = \"staff\"\ndoor = \"main\"\nhold_off_s = 60.0\n",
        broker.port(),
        frames.display(),
        10.0 / f64::from(common::patience_factor())
    );
    let mut serve = common::server::Server::start_with(
        &data,
        &common::server::Options {
            config: camera,
            ..Default::default()
        },
    )
    .unwrap();
    sub.wait_for(Duration::from_secs(60), "the door opened", |m| {
        outcomes_in(m).iter().any(|o| o["result"] == "opened")
    });
    assert!(serve.stop().success());
    // SIGTERM: the controller releases the relay and says offline.
    unsafe {
        libc::kill(door.id() as i32, libc::SIGTERM);
    }
    assert!(door.wait().unwrap().success());
    let grant = sub.on("facegate/gate/main/access")[0].json();
    let outcome = outcomes(&sub)
        .into_iter()
        .find(|o| o["result"] == "opened")
        .unwrap();
    assert_eq!(outcome["person_id"], "obama");
    assert_eq!(outcome["event_id"], grant["event_id"]);
    let ran = std::fs::read_to_string(&opened).unwrap();
    assert_eq!(
        ran.trim(),
        format!("obama {}", grant["event_id"].as_str().unwrap()),
        "the door command ran once, for Obama's grant"
    );
    // Published before the controller exits, delivered to this subscriber a moment later.
    sub.wait_for(Duration::from_secs(10), "the controller offline", |m| {
        m.iter()
            .rfind(|m| m.topic == AVAILABILITY)
            .is_some_and(|m| m.text() == "offline")
    });
}
