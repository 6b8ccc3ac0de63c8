//! `facegate demo` (what `make run` starts): the main job on a fresh machine with no camera.
//! It finds or starts a local mosquitto, serves the API, enrols a demo person from the
//! fixture photos through that API, replays other photos of that person and of strangers as
//! a camera, and prints the MQTT messages as a subscriber sees them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

use crate::local_broker::{self, LocalBroker};
use facegate_core::config::{CameraConfig, Config, SourceKind};
use facegate_core::engine::Engine;
use facegate_daemon::api::{server, ApiKeys};
use facegate_daemon::camera::scene;
use facegate_daemon::daemon::Daemon;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DemoError(String);

fn fail(what: &str) -> impl Fn(&dyn std::fmt::Display) -> DemoError + '_ {
    move |e| DemoError(format!("{what}: {e}"))
}

pub struct DemoOptions {
    pub config: Config,
    pub data_dir: PathBuf,
    pub photos: PathBuf,
    pub api_key: String,
}

const BROKER_PORT: u16 = 1883;
const DEVICE: &str = "demo";
const ENROLLED: &str = "obama.jpg";
/// (photo, who it is) shown by the replay camera, in a loop.
const SCENE: [(&str, &str); 3] = [
    ("obama2.jpg", "the enrolled person, another photo"),
    ("biden.jpg", "a stranger"),
    ("obama3.jpg", "the enrolled person, a third photo"),
];

/// The replay folder, made once from the fixture photos.
fn build_scene(config: &Config, photos: &Path, frames: &Path) -> Result<(), DemoError> {
    if frames.join("done").exists() {
        return Ok(());
    }
    let _ = std::fs::remove_dir_all(frames);
    let mut engine = Engine::open(config).map_err(|e| fail("cannot open the engine")(&e))?;
    let empty = scene::empty_frame(1280, 720);
    for (photo, _) in SCENE {
        let face = scene::photo_frame(&mut engine, &photos.join(photo), 240.0, 1280, 720)
            .map_err(|e| fail(photo)(&e))?;
        // 2 s in view, 1 s of empty hall at 10 fps.
        scene::append_frames(frames, &[(&face, 20), (&empty, 10)])
            .map_err(|e| fail("cannot write the replay frames")(&e))?;
    }
    std::fs::write(frames.join("done"), "").map_err(|e| fail("scene")(&e))?;
    Ok(())
}

/// Create the demo collection and (re-)enrol the demo person through the HTTP API.
fn enrol(url: &str, key: &str, photo: &Path) -> Result<(), DemoError> {
    use base64::Engine as _;
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .build();
    match agent
        .post(&format!("{url}/collection"))
        .set("x-api-key", key)
        .send_json(serde_json::json!({"name": "demo"}))
    {
        Ok(_) | Err(ureq::Error::Status(409, _)) => {}
        Err(e) => return Err(fail("POST /collection")(&e)),
    }
    let bytes = std::fs::read(photo).map_err(|e| fail("cannot read the photo to enrol")(&e))?;
    let body = serde_json::json!({
        "collection_name": "demo",
        "person_id": "obama",
        "person_name": "Barack Obama",
        "face_base_64": base64::engine::general_purpose::STANDARD.encode(bytes),
        "metadata": {"role": "demo"},
    });
    agent
        .put(&format!("{url}/person"))
        .set("x-api-key", key)
        .send_json(body)
        .map_err(|e| fail("PUT /person")(&e))?;
    Ok(())
}

fn print_message(topic: &str, payload: &[u8]) {
    let ms = facegate_core::clock::unix_ms(std::time::SystemTime::now()).rem_euclid(86_400_000);
    let clock = format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    );
    let v: serde_json::Value = serde_json::from_slice(payload).unwrap_or_default();
    let s = |k: &str| v[k].as_str().unwrap_or("-").to_owned();
    if topic.ends_with("/event") {
        println!(
            "{clock}  EVENT   camera {:<6} {:<12} {:<14} score {:<5} liveness {:<12} capture→outbox {} ms",
            s("camera"),
            s("type"),
            v["person_name"].as_str().unwrap_or("(nobody)"),
            v["similarity_score"].as_f64().map_or("-".into(), |x| format!("{x:.2}")),
            v["liveness"]["verdict"].as_str().unwrap_or("-"),
            v["latency_ms"]["total"],
        );
    } else if topic.ends_with("/access") {
        let granted = v["granted"].as_bool().unwrap_or(false);
        println!(
            "{clock}  ACCESS  {:<40} {}",
            topic,
            if granted {
                format!("GRANTED to {}", s("person_name"))
            } else {
                format!("denied ({})", s("reason"))
            }
        );
    } else if topic.ends_with("/status") {
        println!(
            "{clock}  STATUS  {topic} = {}",
            String::from_utf8_lossy(payload)
        );
    }
}

pub fn run(options: DemoOptions) -> Result<(), DemoError> {
    let DemoOptions {
        mut config,
        data_dir,
        photos,
        api_key,
    } = options;
    std::fs::create_dir_all(&data_dir).map_err(|e| fail("cannot create the data directory")(&e))?;
    let _broker = if local_broker::reachable(BROKER_PORT) {
        println!("facegate demo: using the MQTT broker on 127.0.0.1:{BROKER_PORT}");
        None
    } else {
        println!("facegate demo: no broker on 127.0.0.1:{BROKER_PORT}; starting mosquitto");
        Some(
            LocalBroker::start(&data_dir.join("broker"), BROKER_PORT, false)
                .map_err(|e| fail("no MQTT broker")(&e))?,
        )
    };
    let frames = data_dir.join("replay");
    build_scene(&config, &photos, &frames)?;
    config.mqtt.enabled = true;
    config.mqtt.host = "127.0.0.1".into();
    config.mqtt.port = BROKER_PORT;
    config.mqtt.device_id = DEVICE.into();
    config.cameras = vec![CameraConfig {
        name: "front".into(),
        source: SourceKind::Replay,
        path: Some(frames.to_path_buf()),
        fps: 10.0,
        collection: "demo".into(),
        door: "front-door".into(),
        hold_off_s: 2.0,
        ..CameraConfig::default()
    }];
    let addr = config.server.listen;
    let state = server::open_state(
        config,
        &data_dir,
        ApiKeys::new(std::slice::from_ref(&api_key)),
    )
    .map_err(|e| fail("cannot start")(&e))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| fail("tokio")(&e))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| DemoError(format!("cannot listen on {addr}: {e} (is `facegate serve` already running?)")))?;
        let url = format!("http://{}", listener.local_addr().map_err(|e| fail("listener")(&e))?);
        let state = Arc::new(state);
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let mut server_stop = stop_rx.clone();
        let api = tokio::spawn(server::serve(listener, state.clone(), async move {
            let _ = server_stop.changed().await;
        }));
        let photo = photos.join(ENROLLED);
        let key = api_key.clone();
        let url2 = url.clone();
        tokio::task::spawn_blocking(move || enrol(&url2, &key, &photo))
            .await
            .map_err(|e| fail("enrolment")(&e))??;
        println!("facegate demo: API on {url} (key in {}/api-key; docs at {url}/docs)", data_dir.display());
        println!("facegate demo: enrolled \"Barack Obama\" (person_id obama) from {ENROLLED} into collection \"demo\" through PUT /person");
        println!("facegate demo: camera \"front\" replays {} at 10 fps, in a loop:", frames.display());
        for (photo, who) in SCENE {
            println!("    {photo:<12} {who}");
        }
        println!("facegate demo: MQTT messages on facegate/{DEVICE}/# as they arrive (Ctrl-C stops):");
        let mut opts = MqttOptions::new("facegate-demo-viewer", "127.0.0.1", BROKER_PORT);
        opts.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut eventloop) = AsyncClient::new(opts, 16);
        let viewer = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = client.try_subscribe(format!("facegate/{DEVICE}/#"), QoS::AtLeastOnce);
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => print_message(&p.topic, &p.payload),
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let daemon = Daemon::start(&state.config, state.store.clone(), state.metrics.daemon.clone(), &data_dir, state.outputs())
            .map_err(|e| fail("cannot start the camera")(&e))?;
        let _ = state.daemon.set(daemon.status());
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = stop_rx.changed() => {}
        }
        println!("\nfacegate demo: stopping");
        let _ = stop_tx.send(true);
        let _ = api.await;
        daemon.shutdown().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        viewer.abort();
        Ok(())
    })
}
