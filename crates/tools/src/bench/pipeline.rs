//! The main job under load (`facegate bench pipeline`): a 1280×720 replay camera showing an
//! enrolled person (one face, in view 10 frames, away 20, so every appearance is a new track and
//! a new match), the API serving, events going through the outbox to a local mosquitto and
//! back to a subscriber. Reported side by side in one run: the camera's frame rate against the
//! rate the pipeline kept up with, and the event latencies against one bare engine pass
//! (detect, embed, liveness) on the same frame.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde::Serialize;

use super::{err, BenchError};
use crate::local_broker::LocalBroker;
use facegate_core::config::{CameraConfig, Config, SourceKind};
use facegate_core::engine::Engine;
use facegate_daemon::api::{server, ApiKeys};
use facegate_daemon::camera::scene;
use facegate_daemon::daemon::Daemon;

#[derive(Debug, Clone, Serialize)]
pub struct PipelineRun {
    pub mode: String,
    /// Frames per second the camera delivered (replay pace, or as fast as taken).
    pub camera_fps: f64,
    /// Frames per second the pipeline processed.
    pub processed_fps: f64,
    pub frames: u64,
    pub dropped: u64,
    /// API requests answered during the run (the API load client).
    pub api_requests: u64,
    pub events: usize,
    /// `latency_ms.total` of the match events (capture → outbox), median and 90th percentile.
    pub capture_to_outbox_p50_ms: f64,
    pub capture_to_outbox_p90_ms: f64,
    /// Capture → PUBLISH written to the broker, as the publisher measured it.
    pub capture_to_publish_p50_ms: f64,
    pub capture_to_publish_p90_ms: f64,
    /// Stage medians of the match events.
    pub detect_p50_ms: f64,
    pub embed_p50_ms: f64,
    pub liveness_p50_ms: f64,
    pub search_p50_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PipelineReport {
    pub embedder: String,
    pub seconds: f64,
    /// One engine pass on the frame (detect with landmarks, embed, still liveness), median.
    pub engine_pass_ms: f64,
    /// Its detect (with landmarks), embed and liveness medians.
    pub engine_stages_ms: [f64; 3],
    pub runs: Vec<PipelineRun>,
    /// Signing, and a door controller on this machine (PUBLISH → relay).
    pub door: super::door::DoorBench,
}

fn quantile(mut v: Vec<f64>, q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// One engine pass on the frame (detect with landmarks, embed, liveness): median of 15 after
/// 3 warm-up passes; total and per stage.
fn engine_pass(
    engine: &mut Engine,
    face: &image::RgbImage,
    config: &Config,
) -> Result<(f64, [f64; 3]), BenchError> {
    let (mut passes, mut stage_detect, mut stage_embed, mut stage_live) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // Three warm-up passes (ONNX Runtime's first runs allocate), then fifteen timed.
    for i in 0..18 {
        let t = Instant::now();
        let located = engine.locate(face).map_err(err("detect"))?;
        let t1 = Instant::now();
        let lms: Vec<_> = located.iter().map(|(_, l)| l).collect();
        engine.embed(face, &lms).map_err(err("embed"))?;
        let t2 = Instant::now();
        engine
            .liveness(face, &located[..1.min(located.len())], &config.liveness)
            .map_err(err("liveness"))?;
        if i >= 3 {
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            passes.push(ms(t.elapsed()));
            stage_detect.push(ms(t1 - t));
            stage_embed.push(ms(t2 - t1));
            stage_live.push(ms(t2.elapsed()));
        }
    }
    let engine_pass_ms = quantile(passes, 0.5);
    let engine_stages_ms = [
        quantile(stage_detect, 0.5),
        quantile(stage_embed, 0.5),
        quantile(stage_live, 0.5),
    ];

    Ok((engine_pass_ms, engine_stages_ms))
}

pub fn bench_pipeline(
    config: &Config,
    photo: &std::path::Path,
    enrol_photo: &std::path::Path,
    seconds: f64,
) -> Result<PipelineReport, BenchError> {
    let dir = std::env::temp_dir().join(format!("facegate-bench-pipeline-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let frames = dir.join("frames");
    // The frame, and one bare engine pass on it for reference.
    let mut engine_config = config.clone();
    engine_config.inference.threads = 1;
    engine_config.detector.min_face_px = CameraConfig::default().min_face_px;
    let mut engine = Engine::open(&engine_config).map_err(err("engine"))?;
    let face = scene::photo_frame(&mut engine, photo, 220.0, 1280, 720).map_err(err("photo"))?;
    scene::append_frames(&frames, &[(&face, 10)]).map_err(err("frames"))?;
    // Away long enough (0.8 s at 25 fps) for the track to end (cameras.track_lost_s 0.5).
    scene::append_frames(&frames, &[(&scene::empty_frame(1280, 720), 20)])
        .map_err(err("frames"))?;
    let broker = LocalBroker::start(&dir.join("broker"), 0, false).map_err(err("broker"))?;
    let mut config = config.clone();
    config.mqtt.enabled = true;
    config.mqtt.port = broker.port;
    config.mqtt.device_id = "bench".into();
    config.server.inference_workers = 1;
    let key = "bench-key".to_owned();
    let state = server::open_state(
        config.clone(),
        &dir.join("data"),
        ApiKeys::new(std::slice::from_ref(&key)),
    )
    .map_err(err("state"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(2)
        .build()
        .map_err(err("tokio"))?;
    let enrol_bytes = std::fs::read(enrol_photo).map_err(err("enrol photo"))?;
    let query_b64 = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .encode(std::fs::read(photo).map_err(err("photo"))?)
    };
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(err("listen"))?;
        let url = format!("http://{}", listener.local_addr().map_err(err("listen"))?);
        let state = Arc::new(state);
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(server::serve(listener, state.clone(), async move {
            let _ = stop_rx.changed().await;
        }));
        {
            let (url, key) = (url.clone(), key.clone());
            tokio::task::spawn_blocking(move || -> Result<(), BenchError> {
                use base64::Engine as _;
                ureq::post(&format!("{url}/collection")).set("x-api-key", &key)
                    .send_json(serde_json::json!({"name": "bench"})).map_err(err("collection"))?;
                ureq::put(&format!("{url}/person")).set("x-api-key", &key)
                    .send_json(serde_json::json!({
                        "collection_name": "bench", "person_id": "p1", "person_name": "Enrolled",
                        "face_base_64": base64::engine::general_purpose::STANDARD.encode(&enrol_bytes),
                    })).map_err(err("enrol"))?;
                Ok(())
            }).await.map_err(err("enrol"))??;
        }
        // The subscriber.
        let events: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
        let mut opts = MqttOptions::new("bench-sub", "127.0.0.1", broker.port);
        opts.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut eventloop) = AsyncClient::new(opts, 64);
        let sink = events.clone();
        let sub = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = client.try_subscribe("facegate/bench/+/event", QoS::AtLeastOnce);
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if let Ok(v) = serde_json::from_slice(&p.payload) {
                            sink.lock().unwrap().push(v);
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut runs = Vec::new();
        for (mode, fps, api_load) in [
            ("replay at 25 fps", 25.0f32, false),
            ("replay at 25 fps + API load (1 client, POST /face-search)", 25.0, true),
            ("replay as fast as the pipeline takes frames", 0.0, false),
        ] {
            events.lock().unwrap().clear();
            let mut config = state.config.clone();
            config.cameras = vec![CameraConfig {
                name: "bench".into(),
                source: SourceKind::Replay,
                path: Some(frames.to_path_buf()),
                fps,
                collection: "bench".into(),
                // Each decision also makes a signed access message.
                door: "bench-door".into(),
                hold_off_s: 0.0,
                ..CameraConfig::default()
            }];
            let before = state.metrics.daemon.recent_publish_ms().len();
            let daemon = Daemon::start(&config, state.store.clone(), state.metrics.daemon.clone(), &dir.join("data"), state.outputs())
                .map_err(err("daemon"))?;
            let status = daemon.status();
            let stop_load = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let load = api_load.then(|| {
                let (url, key, q, stop) = (url.clone(), key.clone(), query_b64.clone(), stop_load.clone());
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let r = ureq::post(&format!("{url}/face-search")).set("x-api-key", &key)
                            .send_json(serde_json::json!({"collection_name": "bench", "face_base_64": q}));
                        n += u64::from(r.is_ok());
                    }
                    n
                })
            });
            let t0 = Instant::now();
            tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
            let cam = status.camera("bench").expect("camera");
            let elapsed = t0.elapsed().as_secs_f64();
            stop_load.store(true, std::sync::atomic::Ordering::Relaxed);
            daemon.shutdown().await;
            let api_requests = match load {
                Some(h) => tokio::task::spawn_blocking(move || h.join().unwrap_or(0)).await.unwrap_or(0),
                None => 0,
            };
            tokio::time::sleep(Duration::from_millis(300)).await;
            let evs = events.lock().unwrap().clone();
            let matches: Vec<&serde_json::Value> = evs.iter().filter(|e| e["type"] == "match").collect();
            let lat = |k: &str| matches.iter().filter_map(|e| e["latency_ms"][k].as_f64()).collect::<Vec<_>>();
            let publish: Vec<f64> = state.metrics.daemon.recent_publish_ms()[before..].iter().map(|&x| x as f64).collect();
            runs.push(PipelineRun {
                mode: mode.into(),
                camera_fps: cam.frames as f64 / elapsed,
                processed_fps: cam.processed as f64 / elapsed,
                frames: cam.frames,
                dropped: cam.dropped,
                api_requests,
                events: evs.len(),
                capture_to_outbox_p50_ms: quantile(lat("total"), 0.5),
                capture_to_outbox_p90_ms: quantile(lat("total"), 0.9),
                capture_to_publish_p50_ms: quantile(publish.clone(), 0.5),
                capture_to_publish_p90_ms: quantile(publish, 0.9),
                detect_p50_ms: quantile(lat("detect"), 0.5),
                embed_p50_ms: quantile(lat("embed"), 0.5),
                liveness_p50_ms: quantile(lat("liveness"), 0.5),
                search_p50_ms: quantile(lat("search"), 0.5),
            });
        }
        let _ = stop_tx.send(true);
        sub.abort();
        let door = super::door::bench_door(broker.port, &dir.join("door"), 200).await?;
        // The reference, on the same warm machine after the runs.
        let (engine_pass_ms, engine_stages_ms) = engine_pass(&mut engine, &face, &state.config)?;
        drop(broker);
        let _ = std::fs::remove_dir_all(&dir);
        Ok(PipelineReport {
            embedder: state.workers.info().embedder.to_owned(),
            seconds,
            engine_pass_ms,
            engine_stages_ms,
            runs,
            door,
        })
    })
}

pub fn format_pipeline_report(r: &PipelineReport) -> String {
    let mut out = format!(
        "pipeline, {} embedder, {:.0} s per run; one engine pass on the frame: {:.1} ms (detect+landmarks {:.1}, embed {:.1}, liveness {:.1})\n\
         | run | camera fps | processed fps | dropped | API requests | events | capture→outbox p50 / p90 | capture→PUBLISH p50 / p90 | p50 ÷ engine pass | detect / embed / liveness / search p50 |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
        r.embedder, r.seconds, r.engine_pass_ms, r.engine_stages_ms[0], r.engine_stages_ms[1], r.engine_stages_ms[2]
    );
    let pass_us = r.engine_pass_ms * 1000.0;
    let d = &r.door;
    let tail = format!(
        "signing one access message: {:.1} µs = {:.5} of an engine pass ({:.3} %)\n\
         event log write per decision (with thumbnail, synced): p50 {:.0} µs = {:.4} of an engine pass, p99 {:.0} µs\n\
         door controller on this machine, {} grants through mosquitto, {} opened: PUBLISH → relay p50 {:.2} ms, p99 {:.2} ms\n",
        d.signing_us, d.signing_us / pass_us, 100.0 * d.signing_us / pass_us,
        d.audit_write_us, d.audit_write_us / pass_us, d.audit_write_p99_us,
        d.grants, d.opened, d.publish_to_relay_p50_ms, d.publish_to_relay_p99_ms
    );
    for run in &r.runs {
        out += &format!(
            "| {} | {:.1} | {:.1} | {} of {} | {} | {} | {:.1} / {:.1} ms | {:.1} / {:.1} ms | {:.2} | {:.1} / {:.1} / {:.1} / {:.2} ms |\n",
            run.mode, run.camera_fps, run.processed_fps, run.dropped, run.frames, run.api_requests, run.events,
            run.capture_to_outbox_p50_ms, run.capture_to_outbox_p90_ms,
            run.capture_to_publish_p50_ms, run.capture_to_publish_p90_ms,
            run.capture_to_publish_p50_ms / r.engine_pass_ms,
            run.detect_p50_ms, run.embed_p50_ms, run.liveness_p50_ms, run.search_p50_ms,
        );
    }
    out + &tail
}
