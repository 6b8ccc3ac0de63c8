//! The main job end to end: a replay camera, the real models, LMDB on disk, a real mosquitto
//! started by the test, and `facegate serve` as a separate process.

mod common;

use std::time::{Duration, Instant};

use common::broker::{Broker, Subscriber};
use std::os::unix::fs::PermissionsExt;

use common::cameras::{enrol_obama, enrol_obama_with, health, scene_folder, wait_health};
use common::server::{Options, Server};
use facegate_core::access::device_key::parse_public_key;
use facegate_core::access::message::AccessMessage;
use facegate_daemon::camera::scene;
use serde_json::Value;

fn camera_config(broker_port: Option<u16>, camera: &str) -> String {
    camera_config_with(broker_port, "", camera)
}

fn camera_config_with(broker_port: Option<u16>, mqtt_extra: &str, camera: &str) -> String {
    let mqtt = match broker_port {
        Some(port) => format!(
            "[mqtt]\nenabled = true\nport = {port}\ndevice_id = \"gate\"\nkeep_alive_s = 5\nflush_timeout_s = 5.0\n{mqtt_extra}"
        ),
        None => String::new(),
    };
    format!("[inference]\nembedder = \"dlib128\"\n{mqtt}{camera}")
}

/// Camera `front` at door `main`, replaying `frames` once at 10 fps (slowed down as much as
/// the waits are stretched under emulation, so that the pipeline still sees enough frames of
/// each face to decide).
fn front_door_camera(frames: &std::path::Path) -> String {
    format!(
        "[[cameras]]\nname = \"front\"\nsource = \"replay\"\npath = \"{}\"\nfps = {:.2}\n\
         replay_loop = false\ncollection = \"staff\"\ndoor = \"main\"\nhold_off_s = 60.0\n",
        frames.display(),
        10.0 / f64::from(common::patience_factor())
    )
}

#[test]
fn an_enrolled_person_yields_one_match_and_one_grant_and_a_stranger_one_unknown_and_one_denial() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    enrol_obama(&data);
    let frames = scene_folder(dir.path(), &["obama2.jpg", "biden.jpg"], 12, 8);
    let broker = Broker::start(&dir.path().join("broker"), false);
    let sub = Subscriber::start(broker.port(), "test-sub", "#", false);
    let camera = front_door_camera(&frames);
    let mut s = Server::start_with(
        &data,
        &Options {
            config: camera_config_with(Some(broker.port()), "event_thumbnail = true\n", &camera),
            ..Options::default()
        },
    )
    .unwrap();
    wait_health(
        &s,
        Duration::from_secs(60),
        "the replay to end and the outbox to drain",
        |h| h["cameras"][0]["state"] == "ended" && h["mqtt"]["outbox_depth"] == 0,
    );
    // The threshold in force, and that cameras.max_false_accept_per_attempt is off by default.
    let threshold = &health(&s)["cameras"][0]["threshold"];
    assert!(
        (threshold["effective"].as_f64().unwrap() - 0.7).abs() < 1e-6,
        "{threshold}"
    );
    assert_eq!(threshold["templates"], 1, "{threshold}");
    assert_eq!(threshold["per_comparison_fmr"], Value::Null, "{threshold}");
    let public_key = health(&s)["access"]["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let audit_page = |query: &str| s.call("GET", &format!("/events{query}"), None);
    // Tracks end 0.5 s after the last face; give the last decision time to go out.
    sub.wait_for(Duration::from_secs(20), "two access messages", |m| {
        m.iter()
            .filter(|m| m.topic == "facegate/gate/main/access")
            .count()
            >= 2
    });
    std::thread::sleep(Duration::from_secs(1));
    // The audit trail: both decisions, newest first, with their signed access messages.
    let (status, page) = audit_page("");
    assert_eq!(status, 200, "{page}");
    let records = page["events"].as_array().unwrap().clone();
    assert_eq!(records.len(), 2, "{page:#}");
    assert_eq!(records[0]["type"], "unknown");
    assert_eq!(records[1]["type"], "match");
    assert_eq!(records[1]["person_id"], "obama");
    assert_eq!(records[1]["access"]["granted"], true);
    assert_eq!(records[1]["prev_hash"].as_str().unwrap(), "0".repeat(64));
    let (_, granted) = audit_page("?granted=true&door=main&person_id=obama&limit=1");
    assert_eq!(granted["events"].as_array().unwrap().len(), 1, "{granted}");
    assert_eq!(granted["next_cursor"], Value::Null);
    let (_, first) = audit_page("?limit=1");
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let (_, second) = audit_page(&format!("?limit=1&cursor={cursor}"));
    assert_eq!(second["events"][0]["type"], "match");
    let (_, none) = audit_page("?since=2099-01-01T00:00:00Z");
    assert_eq!(none["events"].as_array().unwrap().len(), 0);
    let (status, bad) = audit_page("?since=yesterday");
    assert_eq!(
        (status, bad["code"].as_str()),
        (422, Some("ERR_INVALID_REQUEST"))
    );
    let id = records[1]["event_id"].as_str().unwrap();
    let (status, one) = s.call("GET", &format!("/events/{id}"), None);
    assert_eq!(status, 200, "{one}");
    let thumb = common::server::unb64(one["thumbnail"].as_str().expect("a thumbnail is kept"));
    assert_eq!(image::load_from_memory(&thumb).unwrap().width(), 160);
    assert_eq!(s.call("GET", "/events/nope", None).0, 404);
    assert_eq!(
        s.call_with_key("GET", "/events", None, None).0,
        401,
        "the audit trail needs the API key"
    );
    assert!(s.stop().success());
    // `facegate audit verify` checks the chain, and names a record edited behind its back.
    let verify = || {
        common::facegate_command()
            .args(["audit", "verify", "--data-dir"])
            .arg(&data)
            .output()
            .unwrap()
    };
    let ok = verify();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let report: Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(report["records"], 2, "{report}");
    facegate_core::audit::EventLog::open(&data.join("events"), 100, 0, 16)
        .unwrap()
        .tamper(1, |b| {
            let at = b.windows(5).position(|w| w == b"obama").unwrap();
            b[at..at + 5].copy_from_slice(b"osama");
        })
        .unwrap();
    let bad = verify();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("record 1"), "{err}");

    let events: Vec<Value> = sub
        .on("facegate/gate/front/event")
        .iter()
        .map(|m| m.json())
        .collect();
    let access: Vec<Value> = sub
        .on("facegate/gate/main/access")
        .iter()
        .map(|m| m.json())
        .collect();
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_eq!(access.len(), 2, "{access:#?}");
    let (m, u) = (&events[0], &events[1]);
    assert_eq!(m["type"], "match", "{m:#}");
    assert_eq!(m["person_id"], "obama");
    assert_eq!(m["person_name"], "Barack Obama");
    assert_eq!(m["metadata"]["badge"], "44");
    assert!(m["similarity_score"].as_f64().unwrap() >= 0.7);
    assert_eq!(m["liveness"]["verdict"], "live");
    assert_eq!(m["camera"], "front");
    assert_eq!(m["door"], "main");
    assert!(m["latency_ms"]["total"].as_f64().unwrap() > 0.0);
    assert_eq!(m["sequence"], 1);
    let thumb = common::server::unb64(m["thumbnail"].as_str().expect("a thumbnail was asked for"));
    let thumb = image::load_from_memory(&thumb).expect("the thumbnail is a JPEG");
    assert_eq!(thumb.width(), 160);
    assert_eq!(u["type"], "unknown", "{u:#}");
    assert_eq!(u["person_id"], Value::Null);
    assert_eq!(access[0]["granted"], true);
    assert_eq!(access[0]["person_id"], "obama");
    assert_eq!(access[0]["event_id"], m["event_id"]);
    assert_eq!(access[1]["granted"], false);
    assert_eq!(access[1]["reason"], "unknown");
    assert_eq!(access[1]["event_id"], u["event_id"]);
    // Signed with the key published retained and shown in /health, and kept private.
    let published = sub.on("facegate/gate/pubkey");
    assert_eq!(published[0].text(), public_key);
    let late = Subscriber::start(broker.port(), "late-sub", "facegate/gate/pubkey", false);
    late.wait_for(Duration::from_secs(10), "the retained public key", |m| {
        m.iter().any(|m| m.retain && m.text() == public_key)
    });
    let key = parse_public_key(&public_key).unwrap();
    for (a, e) in access.iter().zip(&events) {
        let message: AccessMessage = serde_json::from_value(a.clone()).unwrap();
        message.verify(&key).expect("a valid signature");
        assert_eq!(message.sequence, e["sequence"].as_u64().unwrap());
        assert_eq!(message.issued_at, e["ts"].as_str().unwrap());
        assert_eq!(e["granted"], message.granted);
    }
    let mode = std::fs::metadata(data.join("access-signing.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // Availability and Home Assistant discovery.
    let status: Vec<String> = sub
        .on("facegate/gate/status")
        .iter()
        .map(|m| m.text())
        .collect();
    assert_eq!(status.first().map(String::as_str), Some("online"));
    assert_eq!(
        status.last().map(String::as_str),
        Some("offline"),
        "a clean stop says offline"
    );
    for topic in [
        "homeassistant/sensor/facegate_gate/front_last_person/config",
        "homeassistant/event/facegate_gate/front_face/config",
        "homeassistant/binary_sensor/facegate_gate/main_access/config",
    ] {
        let msgs = sub.on(topic);
        assert!(!msgs.is_empty(), "no {topic}");
        assert!(msgs[0].json()["device"]["identifiers"][0] == "facegate_gate");
    }
}

#[test]
fn a_person_refused_by_their_access_rules_is_named_in_the_event_and_denied_with_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    enrol_obama_with(&data, "", serde_json::json!({"doors": ["garage"]}));
    let frames = scene_folder(dir.path(), &["obama2.jpg"], 12, 4);
    let broker = Broker::start(&dir.path().join("broker"), false);
    let sub = Subscriber::start(broker.port(), "test-sub", "facegate/#", false);
    let camera = front_door_camera(&frames);
    let mut s = Server::start_with(
        &data,
        &Options {
            config: camera_config_with(Some(broker.port()), "", &camera),
            ..Options::default()
        },
    )
    .unwrap();
    sub.wait_for(Duration::from_secs(60), "an access message", |m| {
        m.iter().any(|m| m.topic == "facegate/gate/main/access")
    });
    assert!(s.stop().success());
    let a: AccessMessage =
        serde_json::from_value(sub.on("facegate/gate/main/access")[0].json()).unwrap();
    let key = parse_public_key(&sub.on("facegate/gate/pubkey")[0].text()).unwrap();
    a.verify(&key).expect("a refusal is signed too");
    assert_eq!((a.granted, a.reason.as_str()), (false, "door_not_allowed"));
    assert_eq!(a.person_id.as_deref(), Some("obama"));
    let e = sub.on("facegate/gate/front/event")[0].json();
    assert_eq!(e["type"], "match", "{e:#}");
    assert_eq!(e["person_id"], "obama");
    assert_eq!(e["granted"], false);
    assert_eq!(e["access_reason"], "door_not_allowed");
}

#[test]
fn events_produced_while_the_broker_is_down_arrive_after_it_returns_in_order_each_once_in_the_outbox(
) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    enrol_obama(&data);
    let frames = scene_folder(dir.path(), &["obama2.jpg"], 4, 6);
    let mut broker = Broker::start(&dir.path().join("broker"), true);
    let sub = Subscriber::start(
        broker.port(),
        "outage-sub",
        "facegate/gate/front/event",
        true,
    );
    let camera = format!(
        "[[cameras]]\nname = \"front\"\nsource = \"replay\"\npath = \"{}\"\nfps = 10.0\n\
         collection = \"staff\"\nhold_off_s = 0.0\n",
        frames.display()
    );
    let mut s = Server::start_with(
        &data,
        &Options {
            config: camera_config(Some(broker.port()), &camera),
            ..Options::default()
        },
    )
    .unwrap();
    sub.wait_for(
        Duration::from_secs(60),
        "two events before the outage",
        |m| m.len() >= 2,
    );
    broker.stop();
    let outage = Instant::now();
    let mut deepest = 0;
    while outage.elapsed() < Duration::from_secs(10) {
        let h = health(&s);
        deepest = deepest.max(h["mqtt"]["outbox_depth"].as_u64().unwrap_or(0));
        std::thread::sleep(Duration::from_millis(250));
    }
    let during = health(&s);
    assert_eq!(during["mqtt"]["connected"], false);
    assert!(
        deepest >= 3,
        "events should pile up in the outbox during 10 s: {deepest}"
    );
    broker.restart();
    wait_health(&s, Duration::from_secs(60), "the backlog to drain", |h| {
        h["mqtt"]["connected"] == true && h["mqtt"]["outbox_depth"] == 0
    });
    // Stop the camera and let SIGTERM flush the rest.
    assert!(s.stop().success());
    let produced = {
        // The last sequence number the daemon assigned, from the events themselves: every
        // number from 1 to it must have arrived.
        let msgs = sub.messages.lock().unwrap();
        msgs.iter()
            .filter_map(|m| m.json()["sequence"].as_u64())
            .max()
            .unwrap()
    };
    sub.wait_for(Duration::from_secs(20), "every sequence number", |m| {
        let got: std::collections::BTreeSet<u64> = m
            .iter()
            .filter_map(|m| m.json()["sequence"].as_u64())
            .collect();
        got.len() as u64 == produced
    });
    let msgs = sub.messages.lock().unwrap().clone();
    let seqs: Vec<u64> = msgs
        .iter()
        .map(|m| m.json()["sequence"].as_u64().unwrap())
        .collect();
    let mut first_seen = Vec::new();
    let mut ids = std::collections::HashMap::new();
    for m in &msgs {
        let v = m.json();
        let seq = v["sequence"].as_u64().unwrap();
        let id = v["event_id"].as_str().unwrap().to_owned();
        // A duplicate (at-least-once) carries the same event_id: one id per outbox entry.
        assert_eq!(ids.entry(seq).or_insert_with(|| id.clone()), &id);
        if !first_seen.contains(&seq) {
            first_seen.push(seq);
        }
    }
    let in_order: Vec<u64> = (1..=produced).collect();
    assert_eq!(first_seen, in_order, "received {seqs:?}");
    eprintln!(
        "outage test: {produced} events produced, {} messages received ({} duplicates), \
         outbox peaked at {deepest} during the 10 s outage",
        msgs.len(),
        msgs.len() as u64 - produced
    );
    assert!(produced >= 6);
}

#[test]
fn kill_9_of_the_daemon_makes_the_broker_publish_offline() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("broker"), false);
    let sub = Subscriber::start(broker.port(), "lwt-sub", "facegate/gate/status", false);
    let mut s = Server::start_with(
        &dir.path().join("data"),
        &Options {
            config: camera_config(Some(broker.port()), ""),
            ..Options::default()
        },
    )
    .unwrap();
    sub.wait_for(Duration::from_secs(20), "online", |m| {
        m.last().is_some_and(|m| m.text() == "online")
    });
    s.kill9();
    sub.wait_for(Duration::from_secs(30), "the Last Will", |m| {
        m.last().is_some_and(|m| m.text() == "offline")
    });
    // It is retained: a new subscriber learns it at once.
    let late = Subscriber::start(broker.port(), "late-sub", "facegate/gate/status", false);
    late.wait_for(Duration::from_secs(5), "retained offline", |m| {
        m.first().is_some_and(|m| m.text() == "offline" && m.retain)
    });
}

#[test]
fn discovery_is_announced_again_when_home_assistant_comes_online() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("broker"), false);
    let sub = Subscriber::start(broker.port(), "ha-sub", "homeassistant/+/+/+/config", false);
    let camera = "[[cameras]]\nname = \"front\"\nsource = \"replay\"\npath = \"/nonexistent\"\ndoor = \"main\"\n";
    let _s = Server::start_with(
        &dir.path().join("data"),
        &Options {
            config: camera_config(Some(broker.port()), camera),
            ..Options::default()
        },
    )
    .unwrap();
    sub.wait_for(Duration::from_secs(20), "three discovery configs", |m| {
        m.len() >= 3
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sub.messages.lock().unwrap().len(), 3);
    // Home Assistant's birth message.
    let mut opts = rumqttc::MqttOptions::new("ha-birth", "127.0.0.1", broker.port());
    opts.set_keep_alive(Duration::from_secs(5));
    let (client, mut connection) = rumqttc::Client::new(opts, 10);
    client
        .publish(
            "homeassistant/status",
            rumqttc::QoS::AtLeastOnce,
            false,
            "online",
        )
        .unwrap();
    for ev in connection.iter().take(10) {
        if matches!(ev, Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)))) {
            break;
        }
    }
    sub.wait_for(Duration::from_secs(10), "the configs again", |m| {
        m.len() >= 6
    });
}

#[test]
fn a_camera_that_cannot_be_opened_is_retried_and_reported_in_health_until_it_works() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("not-yet");
    let camera = format!(
        "[[cameras]]\nname = \"door\"\nsource = \"replay\"\npath = \"{}\"\nfps = 5.0\n",
        missing.display()
    );
    let s = Server::start_with(
        &dir.path().join("data"),
        &Options {
            config: camera_config(None, &camera),
            ..Options::default()
        },
    )
    .unwrap();
    let h = wait_health(&s, Duration::from_secs(20), "two failed opens", |h| {
        h["cameras"][0]["errors"].as_u64().unwrap_or(0) >= 2
    });
    let cam = &h["cameras"][0];
    assert_eq!(cam["name"], "door");
    assert_eq!(cam["state"], "reconnecting");
    assert!(
        cam["last_error"].as_str().unwrap().contains("not-yet"),
        "{cam:#}"
    );
    assert!(cam["last_error_at"].is_string());
    assert_eq!(cam["frames"], 0);
    // The camera appears: the next retry opens it and frames flow.
    scene::append_frames(&missing, &[(&scene::empty_frame(640, 480), 3)]).unwrap();
    let h = wait_health(&s, Duration::from_secs(30), "frames after the retry", |h| {
        h["cameras"][0]["frames"].as_u64().unwrap_or(0) > 0
    });
    assert_eq!(h["cameras"][0]["state"], "streaming");
    let (_, metrics) = s.get_text("/metrics");
    assert!(
        metrics.contains("facegate_camera_errors{camera=\"door\"}"),
        "{metrics}"
    );
}
