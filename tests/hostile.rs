//! Hostile clients and hostile networks: each test is one way that was found to stop the
//! daemon or its door events (most of them without an API key), tried against the real
//! server on loopback, with bounded loops. Each failed on the code before the fix.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::broker::{Broker, Subscriber};
use common::cameras::scene_folder;
use common::fixture_bytes;
use common::server::{b64, item_codes, Options, Server, KEY};
use serde_json::{json, Value};

fn start(config: &str) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(
        &dir.path().join("data"),
        &Options {
            config: config.into(),
            ..Options::default()
        },
    )
    .unwrap();
    (dir, s)
}

fn addr(s: &Server) -> String {
    s.url.trim_start_matches("http://").to_owned()
}

/// One raw HTTP/1.1 exchange; the whole answer as text ("" when the server closed first).
fn raw_request(s: &Server, request: &str) -> String {
    let mut c = TcpStream::connect(addr(s)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn status_of(answer: &str) -> u16 {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn rss_peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn create_collection(s: &Server, name: &str) {
    let (status, body) = s.call("POST", "/collection", Some(&json!({"name": name})));
    assert_eq!(status, 200, "{body}");
}

// --- 1. A poison message in the outbox -------------------------------------------------

#[test]
fn oversized_names_and_metadata_are_refused_at_the_api_with_the_field_named() {
    let (_d, s) = start("");
    create_collection(&s, "staff");
    let photo = b64(&fixture_bytes("obama.jpg"));
    let many_keys: serde_json::Map<String, Value> =
        (0..65).map(|i| (format!("k{i}"), json!("v"))).collect();
    for (field, extra) in [
        ("person_name", json!({"person_name": "n".repeat(257)})),
        ("metadata", json!({"metadata": {"k": "v".repeat(9000)}})),
        ("metadata", json!({"metadata": many_keys})),
    ] {
        let mut body =
            json!({"collection_name": "staff", "person_id": "p1", "face_base_64": photo});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (status, e) = s.call("PUT", "/person", Some(&body));
        assert_eq!(status, 422, "{field}: {e}");
        assert_eq!(e["code"], "ERR_INVALID_REQUEST");
        assert_eq!(e["metadata"]["field"], field, "{e}");
        // The same item in a bulk request fails alone.
        let item = body.as_object().unwrap().clone();
        let (status, results) = s.call(
            "PUT",
            "/persons",
            Some(&json!({"collection_name": "staff", "persons": [item,
                {"person_id": "ok1", "face_base_64": photo}]})),
        );
        assert_eq!(status, 200, "{results}");
        assert_eq!(results[0]["code"], "ERR_INVALID_REQUEST", "{results}");
        assert_eq!(results[1]["code"], "OK", "{results}");
    }
    let (_, list) = s.call("GET", "/persons?collection_name=staff", None);
    assert_eq!(
        list["count"], 1,
        "only the good bulk item was stored: {list}"
    );
}

#[test]
fn an_event_the_broker_refuses_is_set_aside_and_the_messages_behind_it_go_out() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Enrol with 7.8 KiB of metadata: within the API's limit, above this broker's packet limit.
    {
        let s = Server::start_with(
            &data,
            &Options {
                config: "[inference]\nembedder = \"dlib128\"\n".into(),
                ..Options::default()
            },
        )
        .unwrap();
        create_collection(&s, "staff");
        let metadata: serde_json::Map<String, Value> = (0..60)
            .map(|i| (format!("key{i:02}"), json!("x".repeat(120))))
            .collect();
        let (status, body) = s.call(
            "PUT",
            "/person",
            Some(&json!({"collection_name": "staff", "person_id": "obama",
                "person_name": "Barack Obama", "metadata": metadata,
                "face_base_64": b64(&fixture_bytes("obama.jpg"))})),
        );
        assert_eq!(status, 200, "{body}");
    }
    let frames = scene_folder(dir.path(), &["obama2.jpg", "biden.jpg"], 12, 8);
    // mosquitto drops the connection of a client that sends a packet over 4 KiB.
    let broker = Broker::start_with(&dir.path().join("broker"), "max_packet_size 4096\n");
    let sub = Subscriber::start(broker.port(), "test-sub", "facegate/#", false);
    let config = format!(
        "[inference]\nembedder = \"dlib128\"\n[mqtt]\nenabled = true\nport = {}\n\
         device_id = \"gate\"\nkeep_alive_s = 5\nhomeassistant = false\n\
         [[cameras]]\nname = \"front\"\nsource = \"replay\"\npath = \"{}\"\nfps = 10.0\n\
         replay_loop = false\ncollection = \"staff\"\ndoor = \"main\"\nhold_off_s = 60.0\n\
         liveness = \"off\"\n",
        broker.port(),
        frames.display()
    );
    let s = Server::start_with(
        &data,
        &Options {
            config,
            ..Options::default()
        },
    )
    .unwrap();
    // Both decisions' access messages arrive: the match's grant sits right behind the event
    // the broker refuses, the stranger's denial behind both.
    sub.wait_for(Duration::from_secs(60), "two access messages", |m| {
        m.iter()
            .filter(|m| m.topic == "facegate/gate/main/access")
            .count()
            >= 2
    });
    let access: Vec<Value> = sub
        .on("facegate/gate/main/access")
        .iter()
        .map(|m| m.json())
        .collect();
    assert_eq!(access[0]["granted"], true, "{access:?}");
    assert_eq!(access[1]["granted"], false, "{access:?}");
    let events: Vec<Value> = sub
        .on("facegate/gate/front/event")
        .iter()
        .map(|m| m.json())
        .collect();
    assert!(
        events.iter().all(|e| e["type"] != "match"),
        "the oversized match event was set aside"
    );
    assert!(events.iter().any(|e| e["type"] == "unknown"), "{events:?}");
    let (_, h) = s.call("GET", "/health", None);
    assert_eq!(h["mqtt"]["outbox_dead_letters"], 1, "{h:#}");
    assert_eq!(h["mqtt"]["outbox_depth"], 0, "{h:#}");
    let (_, metrics) = s.get_text("/metrics");
    assert!(
        metrics.contains("facegate_outbox_dead_letters_total 1"),
        "{metrics}"
    );
}

// --- 2. Credentials in camera URLs ---------------------------------------------------------

#[test]
fn camera_credentials_never_reach_health_or_the_log() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = format!(
        "[[cameras]]\nname = \"gate\"\nsource = \"mjpeg\"\n\
         url = \"http://admin:p@ss%word@127.0.0.1:{port}/video.cgi?user=admin&pwd=hunter2\"\n"
    );
    let (_d, s) = start(&config);
    let deadline = Instant::now() + Duration::from_secs(20);
    let health = loop {
        let (_, h) = s.call("GET", "/health", None);
        if h["cameras"][0]["errors"].as_u64().unwrap_or(0) >= 2 {
            break h;
        }
        assert!(Instant::now() < deadline, "no camera error: {h:#}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let shown = format!("{health}\n{}", s.log_text());
    assert!(shown.contains(&format!("127.0.0.1:{port}")), "{shown}");
    for secret in ["p@ss", "word", "hunter2"] {
        assert!(!shown.contains(secret), "{secret} leaked:\n{shown}");
    }
}

// --- 3. Metric labels --------------------------------------------------------------------

fn request_series(s: &Server) -> usize {
    let (_, metrics) = s.get_text("/metrics");
    metrics
        .lines()
        .filter(|l| l.starts_with("facegate_http_requests_total{"))
        .count()
}

#[test]
fn random_methods_and_paths_without_a_key_add_no_metric_series() {
    let (_d, s) = start("");
    let before = request_series(&s);
    for i in 0..150 {
        let answer = raw_request(
            &s,
            &format!("M{i}X /p{i} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        );
        assert!(status_of(&answer) >= 400, "{answer}");
    }
    // Also what a prober tries on the public routes.
    for method in ["POST", "DELETE", "BREW"] {
        let answer = raw_request(
            &s,
            &format!("{method} /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        );
        assert_eq!(status_of(&answer), 401, "{answer}");
    }
    let after = request_series(&s);
    assert_eq!(
        after, before,
        "unauthenticated requests created series ({before} before, {after} after)"
    );
}

// --- 4. Slow and idle connections -----------------------------------------------------------

#[test]
fn connections_over_the_cap_get_a_fast_503_and_idle_ones_are_closed() {
    let (_d, s) = start("[server]\nmax_connections = 20\nheader_read_timeout_s = 2\n");
    // 20 clients that connect and say nothing hold every slot.
    let idle: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(addr(&s)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let answer = raw_request(&s, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status_of(&answer), 503, "{answer}");
    assert!(answer.contains("ERR_BUSY"), "{answer}");
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    // The header-read timeout closes them, and the slots come back.
    let t = Instant::now();
    for mut c in idle {
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 64];
        assert!(matches!(c.read(&mut buf), Ok(0) | Err(_)), "still open");
    }
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(s.call_with_key("GET", "/health", None, None).0, 200);
    let (_, metrics) = s.get_text("/metrics");
    assert!(
        metrics.contains("facegate_http_connections_refused_total 1"),
        "{metrics}"
    );
}

#[test]
fn three_hundred_slow_clients_do_not_delay_health() {
    let (_d, s) = start("[server]\nheader_read_timeout_s = 4\n");
    let mut slow: Vec<TcpStream> = (0..300)
        .map(|_| {
            let mut c = TcpStream::connect(addr(&s)).unwrap();
            c.write_all(b"GET /collections HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            c
        })
        .collect();
    let mut worst = Duration::ZERO;
    for round in 0..6 {
        // A byte per client every half second: never a whole header.
        for c in &mut slow {
            let _ = c.write_all(b"X");
        }
        let t = Instant::now();
        assert_eq!(
            s.call_with_key("GET", "/health", None, None).0,
            200,
            "round {round}"
        );
        worst = worst.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("/health under 300 slow clients: worst {worst:?} over 6 rounds");
    assert!(worst < Duration::from_secs(2), "/health took {worst:?}");
    // By now every slow client has run out of its header-read time.
    std::thread::sleep(Duration::from_secs(2));
    let closed = slow
        .iter()
        .filter(|c| {
            c.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let mut buf = [0u8; 1];
            // End of stream (or a reset): the server closed it. A timeout: still open.
            match c.peek(&mut buf) {
                Ok(_) => true,
                Err(e) => !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
            }
        })
        .count();
    assert!(
        closed >= 290,
        "only {closed} of 300 slow clients were cut off"
    );
}

#[test]
fn a_request_body_trickled_past_the_request_timeout_is_cut_off_with_408() {
    let (_d, s) = start("[server]\nrequest_timeout_s = 2\n");
    let mut c = TcpStream::connect(addr(&s)).unwrap();
    c.write_all(
        format!(
            "POST /collection HTTP/1.1\r\nHost: x\r\nx-api-key: {KEY}\r\n\
             content-type: application/json\r\ncontent-length: 1000\r\n\r\n{{"
        )
        .as_bytes(),
    )
    .unwrap();
    c.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let t = Instant::now();
    let mut out = Vec::new();
    while t.elapsed() < Duration::from_secs(6) {
        let _ = c.write_all(b" ");
        let mut buf = [0u8; 1024];
        match c.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if out.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            Err(_) => {}
        }
    }
    let answer = String::from_utf8_lossy(&out);
    assert_eq!(status_of(&answer), 408, "{answer}");
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
}

// --- 5. Bulk amplification ---------------------------------------------------------------

#[test]
fn a_bulk_body_of_a_million_tiny_items_is_refused_while_parsing_without_memory_growth() {
    let (_d, s) = start("");
    create_collection(&s, "staff");
    let baseline = rss_peak_kib(s.pid());
    let mut body = br#"{"collection_name": "staff", "persons": ["#.to_vec();
    body.extend(std::iter::repeat_n(&b"0,"[..], 1_000_000).flatten());
    body.extend_from_slice(b"0]}");
    let t = Instant::now();
    let (status, e) = s.call_raw("PUT", "/persons", &body);
    assert_eq!(status, 413, "{e}");
    assert!(e["message"].as_str().unwrap().contains("1000"), "{e}");
    let grown_mib = (rss_peak_kib(s.pid()).saturating_sub(baseline)) / 1024;
    assert!(grown_mib < 64, "peak RSS grew by {grown_mib} MiB");
    eprintln!("refused in {:?}, peak RSS +{grown_mib} MiB", t.elapsed());
}

#[test]
fn a_bulk_request_over_the_item_limit_is_refused_naming_the_limit() {
    let (_d, s) = start("[server]\nmax_bulk_items = 2\n");
    create_collection(&s, "staff");
    let photo = b64(&fixture_bytes("obama.jpg"));
    let items: Vec<Value> = (0..3)
        .map(|i| json!({"person_id": format!("p{i}"), "face_base_64": photo}))
        .collect();
    let (status, e) = s.call(
        "PUT",
        "/persons",
        Some(&json!({"collection_name": "staff", "persons": items})),
    );
    assert_eq!(status, 413, "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("at most 2 persons"),
        "{e}"
    );
    let (_, list) = s.call("GET", "/persons?collection_name=staff", None);
    assert_eq!(list["count"], 0);
}

// --- Also found in the same review --------------------------------------------------------

#[test]
fn a_camera_that_trickles_bytes_is_reconnected_instead_of_waited_on() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().take(4) {
            let Ok(mut c) = conn else { continue };
            std::thread::spawn(move || {
                let _ = c.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=f\r\n\r\n\
                      --f\r\nContent-Type: image/jpeg\r\n",
                );
                // One byte every two seconds: never a frame, never a read timeout.
                for _ in 0..30 {
                    std::thread::sleep(Duration::from_secs(2));
                    if c.write_all(b"X").is_err() {
                        return;
                    }
                }
            });
        }
    });
    let config = format!(
        "[[cameras]]\nname = \"slow\"\nsource = \"mjpeg\"\nurl = \"http://127.0.0.1:{port}/v\"\n"
    );
    let (_d, s) = start(&config);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, h) = s.call("GET", "/health", None);
        let cam = &h["cameras"][0];
        if cam["errors"].as_u64().unwrap_or(0) >= 1 {
            let err = cam["last_error"].as_str().unwrap_or("");
            assert!(err.contains("no complete frame"), "{err}");
            break;
        }
        assert!(Instant::now() < deadline, "never reconnected: {h:#}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn lists_and_searches_leave_out_full_images_unless_asked_and_within_the_budget() {
    let (_d, s) = start("[server]\nmax_response_mib = 1\n");
    create_collection(&s, "staff");
    // A real photo padded after its end marker to 400 KB: decoders ignore the tail, the store
    // keeps the bytes as posted.
    let mut padded = fixture_bytes("obama.jpg");
    padded.resize(400_000, 0);
    for id in ["a", "b", "c"] {
        let (status, body) = s.call(
            "PUT",
            "/person",
            Some(&json!({"collection_name": "staff", "person_id": id,
                "face_storage_type": "StoreFullImage", "face_base_64": b64(&padded)})),
        );
        assert_eq!(status, 200, "{body}");
    }
    let (_, list) = s.call("GET", "/persons?collection_name=staff", None);
    let persons = list["persons"].as_array().unwrap();
    assert!(
        persons.iter().all(|p| p["face_base_64"].is_null()),
        "full images only when asked"
    );
    let response = ureq::get(&format!(
        "{}/persons?collection_name=staff&include_images=true",
        s.url
    ))
    .set("x-api-key", KEY)
    .call()
    .unwrap();
    assert_eq!(response.header("x-facegate-images-omitted"), Some("1"));
    let list: Value = response.into_json().unwrap();
    let with_image = list["persons"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["face_base_64"].is_string())
        .count();
    assert_eq!(with_image, 2, "two 400 KB images fit in 1 MiB");
    // One person by id still returns the whole record.
    let (_, one) = s.call("GET", "/person/staff/a", None);
    assert!(one["face_base_64"].is_string());
}

#[test]
fn images_are_refused_by_decoded_bytes_and_by_shape_before_any_work() {
    let (_d, s) = start("");
    let deep = common::png_claiming_format(7000, 5000, 16, 6);
    let narrow = {
        let img = image::RgbImage::new(16, 400_000);
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    };
    for (what, bytes, needle) in [
        ("40 MP of 16-bit RGBA", deep, "MiB"),
        ("a 16 x 400,000 strip", narrow, "aspect ratio"),
    ] {
        let t = Instant::now();
        let (status, e) = s.call(
            "POST",
            "/detect",
            Some(&json!({"image_base_64": b64(&bytes)})),
        );
        assert_eq!(status, 413, "{what}: {e}");
        assert_eq!(e["code"], "ERR_IMAGE_TOO_LARGE", "{what}: {e}");
        assert!(
            e["message"].as_str().unwrap().contains(needle),
            "{what}: {e}"
        );
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "{what}: {:?}",
            t.elapsed()
        );
    }
}

#[test]
fn person_ids_are_limited_in_bytes_and_look_alikes_refused_without_spoiling_a_bulk_request() {
    let (_d, s) = start("");
    create_collection(&s, "staff");
    let photo = b64(&fixture_bytes("obama.jpg"));
    let emoji = "😀".repeat(127);
    let (status, results) = s.call(
        "PUT",
        "/persons",
        Some(&json!({"collection_name": "staff", "persons": [
            {"person_id": emoji, "face_base_64": photo},
            {"person_id": "adm\u{200B}in", "face_base_64": photo},
            {"person_id": "evil\u{202E}gpj", "face_base_64": photo},
            {"person_id": "fine", "face_base_64": photo},
        ]})),
    );
    assert_eq!(status, 200, "{results}");
    let codes = item_codes(&results);
    assert_eq!(
        codes,
        [
            "ERR_INVALID_REQUEST",
            "ERR_INVALID_REQUEST",
            "ERR_INVALID_REQUEST",
            "OK"
        ]
    );
    let (status, e) = s.call(
        "PUT",
        "/person",
        Some(&json!({"collection_name": "staff", "person_id": emoji, "face_base_64": photo})),
    );
    assert_eq!(status, 422, "{e}");
    assert!(e["message"].as_str().unwrap().contains("bytes"), "{e}");
}

#[test]
fn a_cli_writing_into_a_closed_pipe_exits_quietly() {
    let mut child = common::facegate_command()
        .arg("print-config")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}
