//! Crash safety: a server killed with SIGKILL in the middle of bulk enrolments restarts on a
//! clean store in which every person whose item answered `OK` exists with a searchable
//! template, and nothing half-written exists.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::server::{b64, jpeg, Options, Server, KEY};
use facegate_core::clock::SystemClock;
use facegate_core::config::{EmbedderKind, InferenceConfig};
use facegate_core::engine::embedder::{fingerprint, Metric};
use facegate_core::engine::runtime::model_dir;
use facegate_core::store::{ModelId, Store, StoreOptions};
use serde_json::{json, Value};

const BATCH: usize = 25;
const TOTAL: usize = 1_050;

/// Distinct photos made from the single-face fixtures: crops and mirror images.
fn synthetic_faces() -> Vec<String> {
    let mut out = Vec::new();
    for name in [
        "obama.jpg",
        "obama2.jpg",
        "obama3.jpg",
        "biden.jpg",
        "32bit.png",
    ] {
        let img = image::open(common::fixture(name)).unwrap().to_rgb8();
        let h = 420;
        let w = img.width() * h / img.height();
        let img = image::imageops::resize(&img, w, h, image::imageops::FilterType::Triangle);
        for crop in 0..4u32 {
            let (dx, dy) = (crop * w / 40, (3 - crop) * h / 40);
            let cropped =
                image::imageops::crop_imm(&img, dx, dy, w - 2 * dx, h - 2 * dy).to_image();
            out.push(b64(&jpeg(&cropped)));
            out.push(b64(&jpeg(&image::imageops::flip_horizontal(&cropped))));
        }
    }
    out
}

fn bulk(url: &str, faces: &[String], first: usize) -> Result<Vec<(String, String)>, String> {
    let persons: Vec<Value> = (first..first + BATCH)
        .map(|n| {
            json!({"person_id": format!("p{n:05}"), "person_name": format!("Person {n}"),
                   "face_base_64": faces[n % faces.len()]})
        })
        .collect();
    let body =
        json!({"collection_name": "site", "face_storage_type": "NoStorage", "persons": persons});
    let response = ureq::put(&format!("{url}/persons"))
        .set("x-api-key", KEY)
        .timeout(Duration::from_secs(60))
        .send_json(body)
        .map_err(|e| e.to_string())?;
    let items: Vec<Value> = response.into_json().map_err(|e| e.to_string())?;
    Ok(items
        .iter()
        .map(|i| {
            (
                i["metadata"]["person_id"].as_str().unwrap_or("").to_owned(),
                i["code"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect())
}

fn dlib() -> Options {
    Options {
        extra_args: vec!["--embedder".into(), "dlib128".into()],
        ..Options::default()
    }
}

#[test]
fn a_server_killed_mid_enrolment_keeps_every_acknowledged_person_and_nothing_half_written() {
    let faces = Arc::new(synthetic_faces());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // dlib128 keeps the test quick; durability does not depend on the embedder.
    let mut server = Server::start_with(&data, &dlib()).unwrap();
    assert_eq!(
        server
            .call("POST", "/collection", Some(&json!({"name": "site"})))
            .0,
        200
    );

    // Two clients enrol batches until the server dies under them.
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let next = Arc::new(Mutex::new(0usize));
    let dead = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (url, faces) = (server.url.clone(), faces.clone());
            let (acknowledged, next, dead) = (acknowledged.clone(), next.clone(), dead.clone());
            std::thread::spawn(move || loop {
                let first = {
                    let mut n = next.lock().unwrap();
                    let first = *n;
                    *n += BATCH;
                    first
                };
                if first >= TOTAL || dead.load(Ordering::SeqCst) {
                    return;
                }
                match bulk(&url, &faces, first) {
                    Ok(items) => acknowledged.lock().unwrap().extend(
                        items
                            .into_iter()
                            .filter(|(_, c)| c == "OK")
                            .map(|(id, _)| id),
                    ),
                    Err(_) => return,
                }
            })
        })
        .collect();
    let started = Instant::now();
    while acknowledged.lock().unwrap().len() < 400 {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "enrolment too slow"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Requests are in flight at this moment: kill without any chance to clean up.
    server.kill9();
    dead.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().unwrap();
    }
    let acked: Vec<String> = acknowledged.lock().unwrap().clone();
    assert!(acked.len() >= 400);

    // The store opens cleanly and is consistent: every person has a template and the
    // counts agree; every acknowledged person is there.
    let model = ModelId {
        id: fingerprint(
            &model_dir(&InferenceConfig::default()),
            EmbedderKind::Dlib128,
            facegate_core::config::Precision::Fp32,
        )
        .unwrap(),
        dim: 128,
        metric: Metric::Euclidean,
    };
    {
        let store = Store::open(
            &data,
            model,
            &StoreOptions::default(),
            Arc::new(SystemClock),
        )
        .expect("the store opens after SIGKILL");
        assert_eq!(store.verify().unwrap(), Vec::<String>::new());
        let stored: std::collections::HashSet<String> = store
            .template_keys()
            .unwrap()
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        let missing: Vec<_> = acked.iter().filter(|id| !stored.contains(*id)).collect();
        assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
        assert_eq!(
            store.collection("site").unwrap().num_persons as usize,
            stored.len()
        );
    }

    // Restarted, the server finds acknowledged persons by their photo.
    let server = Server::start_with(&data, &dlib()).unwrap();
    for id in acked.iter().step_by(acked.len() / 8) {
        let n: usize = id[1..].parse().unwrap();
        let (status, hits) = server.call(
            "POST",
            "/face-search",
            Some(
                &json!({"collection_name": "site", "face_base_64": faces[n % faces.len()],
                         "min_similarity_score": 0.9, "max_results": 200}),
            ),
        );
        assert_eq!(status, 200, "{hits}");
        assert!(
            hits.as_array()
                .unwrap()
                .iter()
                .any(|h| h["person_id"] == id.as_str()),
            "{id} not found"
        );
    }
    // And enrolment goes on where it stopped, past 1,000 persons in all.
    let mut first = acked.len().div_ceil(BATCH) * BATCH + 10 * BATCH;
    loop {
        let (_, c) = server.call("GET", "/collection/site", None);
        if c["num_persons"].as_u64().unwrap() >= 1_000 {
            break;
        }
        let items = bulk(&server.url, &faces, first).unwrap();
        assert!(items.iter().all(|(_, code)| code == "OK"), "{items:?}");
        first += BATCH;
    }
}
