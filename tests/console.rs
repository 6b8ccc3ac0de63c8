//! The operator's console in a real browser (headless Debian chromium through chromedriver)
//! against the real `facegate serve` with a replay camera, the real models, LMDB on disk and
//! a real mosquitto. Screenshots of each view go to `target/tmp/console/`.

mod common;

use std::time::{Duration, Instant};

use common::broker::{Broker, Received, Subscriber};
use common::server::{Options, Server, KEY};
use common::webdriver::Browser;
use serde_json::{json, Value};

const LONG: Duration = Duration::from_secs(60);
const SHORT: Duration = Duration::from_secs(15);

fn events_of(m: &[Received]) -> Vec<Value> {
    m.iter()
        .filter(|r| r.topic == "facegate/gate/front/event")
        .filter_map(|r| serde_json::from_slice(&r.payload).ok())
        .collect()
}

fn unknowns(s: &Server) -> Vec<Value> {
    let (status, page) = s.call("GET", "/unknowns", None);
    assert_eq!(status, 200, "{page}");
    page["unknowns"].as_array().unwrap().clone()
}

fn wait_unknowns(s: &Server, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + common::patience(LONG);
    loop {
        let u = unknowns(s);
        if pred(&u) {
            return u;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {u:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[test]
fn an_operator_sees_decisions_live_enrols_from_a_file_and_promotes_and_ignores_strangers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Nobody is enrolled: both faces of the looping replay are strangers at first.
    let frames = common::cameras::scene_folder(dir.path(), &["obama2.jpg", "biden.jpg"], 15, 10);
    let broker = Broker::start(&dir.path().join("broker"), false);
    let sub = Subscriber::start(broker.port(), "console-test", "facegate/gate/#", false);
    let config = format!(
        "[inference]\nembedder = \"dlib128\"\n\
         [mqtt]\nenabled = true\nport = {}\ndevice_id = \"gate\"\nkeep_alive_s = 5\n\
         [[cameras]]\nname = \"front\"\nsource = \"replay\"\npath = \"{}\"\nfps = {:.2}\n\
         replay_loop = true\ncollection = \"staff\"\nhold_off_s = 1.0\n",
        broker.port(),
        frames.display(),
        10.0 / f64::from(common::patience_factor())
    );
    let s = Server::start_with(
        &data,
        &Options {
            config,
            ..Options::default()
        },
    )
    .unwrap();
    assert_eq!(
        s.call("POST", "/collection", Some(&json!({"name": "staff"})))
            .0,
        200
    );

    // The page: served without a key, with a policy that forbids inline code; its data only
    // with the key.
    let page = ureq::get(&format!("{}/ui", s.url)).call().unwrap();
    let csp = page.header("content-security-policy").unwrap().to_owned();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    let mut weight = page.into_string().unwrap().len();
    for asset in ["/ui/app.js", "/ui/app.css"] {
        let r = ureq::get(&format!("{}{asset}", s.url)).call().unwrap();
        assert!(r.header("content-security-policy").is_some());
        weight += r.into_string().unwrap().len();
    }
    for path in [
        "/events/stream",
        "/cameras/front/snapshot",
        "/unknowns",
        "/events",
    ] {
        assert_eq!(s.call_with_key("GET", path, None, None).0, 401, "{path}");
    }

    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console");
    let browser = Browser::start(&out, 1280, 900);

    // Log in: the key goes to session storage, never into the URL.
    let load_started = Instant::now();
    browser.goto(&format!("{}/ui", s.url));
    let key_field = browser.find("#login-key", SHORT);
    let first_paint = browser.wait_until(
        SHORT,
        "the first contentful paint",
        "const p = performance.getEntriesByName('first-contentful-paint')[0]; return p ? p.startTime : null;",
    );
    let page_load = browser.run(
        "const n = performance.getEntriesByType('navigation')[0]; return n.loadEventEnd;",
        json!([]),
    );
    browser.screenshot("login");
    browser.type_into(&key_field, KEY);
    let submitted = Instant::now();
    browser.click(&browser.find("#login-form button[type=submit]", SHORT));
    browser.wait_until(
        SHORT,
        "the live view",
        "return document.body.dataset.ready === 'live';",
    );
    let to_live = submitted.elapsed();
    let load_to_live = load_started.elapsed();
    assert!(!browser
        .run("return location.href;", json!([]))
        .as_str()
        .unwrap()
        .contains(KEY));
    assert_eq!(
        browser.run(
            "return sessionStorage.getItem('facegate-api-key');",
            json!([])
        ),
        KEY
    );

    // A decision arrives on the live view as it happens, and the camera's frame is shown.
    browser.wait_until(
        LONG,
        "a decision on the live feed",
        "return document.querySelector('#live-feed li.decision');",
    );
    browser.wait_until(
        SHORT,
        "the camera's snapshot",
        "const i = document.querySelector('img[data-camera=front]'); return i && i.complete && i.naturalWidth === 640;",
    );
    browser.screenshot("live");

    // Strangers get persistent ids, and the MQTT events carry them.
    let seen = wait_unknowns(&s, "two strangers, each seen twice", |u| {
        u.len() == 2 && u.iter().all(|x| x["sightings"].as_u64().unwrap() >= 2)
    });
    assert_eq!(seen[0]["unknown_id"], "unknown-2");
    assert!(seen[0]["thumbnail"].is_string());
    let unknown_events: Vec<Value> = events_of(&sub.on("facegate/gate/front/event"))
        .into_iter()
        .filter(|e| e["type"] == "unknown")
        .collect();
    assert!(unknown_events.len() >= 2, "{unknown_events:#?}");
    for e in &unknown_events {
        let id = e["unknown_id"]
            .as_str()
            .expect("unknown events carry unknown_id");
        assert!(id == "unknown-1" || id == "unknown-2", "{e}");
        assert!(e["sightings"].as_u64().unwrap() >= 1);
    }
    assert!(
        unknown_events
            .iter()
            .any(|e| e["sightings"].as_u64().unwrap() >= 2),
        "a stranger who comes back is counted: {unknown_events:#?}"
    );

    // Promote the first stranger (the face first in the replay), ignore the second.
    browser.goto(&format!("{}/ui#strangers", s.url));
    browser.wait_until(SHORT, "the strangers view", "return document.body.dataset.ready === 'strangers' && document.querySelector('li[data-unknown-id=\"unknown-2\"]');");
    browser.screenshot("strangers");
    let name = browser.find("#st-name-unknown-1", SHORT);
    browser.type_into(&name, "Barack Obama");
    browser.click(&browser.find(
        "li[data-unknown-id=\"unknown-1\"] button[data-action=enrol]",
        SHORT,
    ));
    browser.wait_until(SHORT, "the enrolment of the stranger", "return document.querySelector('#strangers-result').textContent.includes('enrolled as Barack Obama');");
    browser.click(&browser.find(
        "li[data-unknown-id=\"unknown-2\"] button[data-action=ignore]",
        SHORT,
    ));
    browser.wait_until(SHORT, "the stranger ignored", "return document.querySelector('#strangers-result').textContent.includes('will not be reported again');");
    let ignored_at = sub.on("facegate/gate/front/event").len();
    let left = unknowns(&s);
    assert_eq!(left.len(), 1, "{left:#?}");
    assert_eq!(
        (left[0]["unknown_id"].as_str(), left[0]["ignored"].as_bool()),
        (Some("unknown-2"), Some(true))
    );
    let (_, persons) = s.call("GET", "/persons?collection_name=staff", None);
    let promoted = persons["persons"][0].clone();
    assert_eq!(promoted["person_name"], "Barack Obama", "{persons}");
    let faces = promoted["num_faces"].as_u64().unwrap();
    assert!((1..=5).contains(&faces), "{promoted}");
    // A stranger is never enrolled over an existing person; refused, it stays a stranger.
    let taken_id = promoted["person_id"].as_str().unwrap();
    let (status, body) = s.call(
        "POST",
        "/unknowns/unknown-2/enrol",
        Some(&json!({"collection_name": "staff", "person_id": taken_id, "person_name": "x"})),
    );
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("ERR_ALREADY_EXISTS")),
        "{body}"
    );
    assert!(
        unknowns(&s).iter().any(|u| u["unknown_id"] == "unknown-2"),
        "put back after the refusal"
    );
    let (_, same) = s.call("GET", &format!("/person/staff/{taken_id}"), None);
    assert_eq!(
        (same["person_name"].as_str(), same["num_faces"].as_u64()),
        (Some("Barack Obama"), Some(faces))
    );

    // The promoted stranger is recognised from now on; the ignored one is never reported
    // again: two matches later, a whole pass of the ignored face went by unreported.
    sub.wait_for(
        common::patience(LONG),
        "two matches of the promoted stranger",
        |m| {
            events_of(&m[ignored_at.min(m.len())..])
                .iter()
                .filter(|e| e["type"] == "match" && e["person_name"] == "Barack Obama")
                .count()
                >= 2
        },
    );
    let after: Vec<Value> = events_of(&sub.on("facegate/gate/front/event")[ignored_at..]);
    let first_match = after.iter().position(|e| e["type"] == "match").unwrap();
    // Nobody else is in the replay: after the first match nothing is unknown at all (not the
    // ignored stranger under its id, nor under a new one).
    assert!(
        !after[first_match..].iter().any(|e| e["type"] == "unknown"),
        "an ignored stranger was reported: {after:#?}"
    );
    assert_eq!(unknowns(&s).len(), 1, "no new stranger either");
    let (status, detail) = s.call("GET", "/unknowns/unknown-2", None);
    assert_eq!(status, 200);
    assert!(
        detail["sightings"].as_u64().unwrap() > seen[0]["sightings"].as_u64().unwrap(),
        "the ignored stranger is still recognised: {detail}"
    );

    // People: enrol from a file (the device camera is tried too: its fake picture has no
    // face, and the page says why), find the person, change their name and access rules.
    browser.goto(&format!("{}/ui#people", s.url));
    browser.wait_until(
        SHORT,
        "the people view",
        "return document.body.dataset.ready === 'people';",
    );
    browser.click(&browser.find("#camera-start", SHORT));
    browser.wait_until(
        SHORT,
        "the camera preview",
        "const v = document.querySelector('#camera-video'); return !v.hidden && v.videoWidth > 0;",
    );
    browser.click(&browser.find("#camera-capture", SHORT));
    let unfit = browser.wait_until(SHORT, "the capture's check", "const t = document.querySelector('#enrol-check'); return t.classList.contains('bad') && t.textContent;");
    assert!(
        unfit.as_str().unwrap().contains("FACE_NOT_FOUND"),
        "{unfit}"
    );
    browser.type_into(&browser.find("#enrol-id", SHORT), "joe");
    browser.type_into(&browser.find("#enrol-name", SHORT), "Joe Biden");
    let photo = common::fixture("biden.jpg");
    browser.type_into(
        &browser.find("#enrol-file", SHORT),
        &photo.display().to_string(),
    );
    browser.wait_until(SHORT, "the photo's check", "const t = document.querySelector('#enrol-check').textContent; return t && !t.startsWith('Checking');");
    // The still-photo liveness checks judge a print; this test is about the page, not them.
    browser.click(&browser.find("#enrol-liveness", SHORT));
    browser.click(&browser.find("#enrol-form button[type=submit]", SHORT));
    browser.wait_until(SHORT, "the enrolment", "return document.querySelector('#enrol-result').textContent.includes('Enrolled Joe Biden');");
    browser.type_into(&browser.find("#people-filter", SHORT), "bid");
    let shown = browser.wait_until(
        SHORT,
        "the person found",
        "const l = [...document.querySelectorAll('#people-list li[data-person-id]')].map(e => e.dataset.personId); return l.length === 1 ? l : null;",
    );
    assert_eq!(shown, json!(["joe"]));
    browser.screenshot("people");
    browser.click(&browser.find("#people-list button[data-person-id=joe]", SHORT));
    browser.wait_until(
        SHORT,
        "the person's faces",
        "return document.querySelector('#pd-faces img');",
    );
    let pd_name = browser.find("#pd-name", SHORT);
    browser.run("arguments[0].value = '';", json!([pd_name.as_arg()]));
    browser.type_into(&pd_name, "Joseph Biden");
    browser.run(
        "document.querySelector('#pd-access').value = '{\"doors\": [\"garage\"]}';",
        json!([]),
    );
    browser.click(&browser.find("#pd-form button[type=submit]", SHORT));
    browser.wait_until(
        SHORT,
        "the person saved",
        "return document.querySelector('#pd-result').textContent.includes('Saved Joseph Biden');",
    );
    let (_, joe) = s.call("GET", "/person/staff/joe", None);
    assert_eq!(joe["person_name"], "Joseph Biden");
    assert_eq!(joe["access"]["doors"], json!(["garage"]));
    assert_eq!(joe["num_faces"], 1, "faces are kept by an edit");

    // Events, with their faces.
    browser.goto(&format!("{}/ui#events", s.url));
    browser.wait_until(SHORT, "events with faces", "return [...document.querySelectorAll('#events-table img')].some(i => i.complete && i.naturalWidth > 0);");
    browser.screenshot("events");
    browser.run(
        "document.querySelector('#ev-type').value = 'match';",
        json!([]),
    );
    browser.click(&browser.find("#events-filter button[type=submit]", SHORT));
    let types = browser.wait_until(
        SHORT,
        "only matches",
        "const r = [...document.querySelectorAll('#events-table tbody tr[data-event-id] td:nth-child(4)')].map(t => t.textContent); return r.length && r.every(t => t === 'match') ? r : null;",
    );
    assert!(!types.as_array().unwrap().is_empty());

    // System.
    browser.goto(&format!("{}/ui#system", s.url));
    let facts = browser.wait_until(SHORT, "the system view", "return document.body.dataset.ready === 'system' && document.querySelector('#system-facts').textContent;");
    for word in [
        "Embedder",
        "Execution providers",
        "Store",
        "MQTT",
        "connected to",
        "Camera front",
    ] {
        assert!(facts.as_str().unwrap().contains(word), "{word}: {facts}");
    }
    browser.screenshot("system");

    // Back on the live view: the decision → page latency of the events that arrive now.
    browser.goto(&format!("{}/ui#live", s.url));
    let before = browser
        .run("return window.facegateLive.length;", json!([]))
        .as_u64()
        .unwrap();
    browser.wait_until(
        LONG,
        "four more decisions live",
        &format!("return window.facegateLive.length >= {} ;", before + 4),
    );
    let mut latencies: Vec<f64> = browser
        .run(
            "return window.facegateLive.slice(arguments[0]).map(e => e.latency_ms);",
            json!([before]),
        )
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    latencies.sort_by(f64::total_cmp);
    browser.wait_until(
        LONG,
        "a face in the camera's snapshot",
        "const i = document.querySelector('img[data-camera=front]'); return i && Number(i.dataset.faces) >= 1;",
    );
    browser.wait_until(SHORT, "the feed's faces", "return [...document.querySelectorAll('#live-feed img')].some(i => i.complete && i.naturalWidth > 0);");
    browser.screenshot("live-later");
    eprintln!(
        "console figures: page weight {weight} bytes (HTML+JS+CSS); first contentful paint {:.0} ms, \
         load event {:.0} ms after navigation; log-in click to the live view with its data {} ms \
         (test driver round trips included; {} ms from opening the page, typing included); \
         SSE decision→page latency over {} events: p50 {:.1} ms, max {:.1} ms; screenshots in {}",
        first_paint.as_f64().unwrap(),
        page_load.as_f64().unwrap_or(f64::NAN),
        to_live.as_millis(),
        load_to_live.as_millis(),
        latencies.len(),
        percentile(&latencies, 0.5),
        latencies.last().copied().unwrap_or(f64::NAN),
        out.display()
    );
    assert!(weight < 300 * 1024);
}

#[test]
fn the_stranger_api_refuses_bad_ids_and_unknown_strangers_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(
        &dir.path().join("data"),
        &Options {
            config: "[inference]\nembedder = \"dlib128\"\n".into(),
            ..Options::default()
        },
    )
    .unwrap();
    assert_eq!(
        s.call("POST", "/collection", Some(&json!({"name": "staff"})))
            .0,
        200
    );
    let (status, page) = s.call("GET", "/unknowns", None);
    assert_eq!((status, page["unknowns"].clone()), (200, json!([])));
    for (method, path) in [
        ("GET", "/unknowns/stranger-1"),
        ("POST", "/unknowns/unknown-0/ignore"),
        ("DELETE", "/unknowns/12"),
    ] {
        let (status, body) = s.call(method, path, None);
        assert_eq!(
            (status, body["code"].as_str()),
            (422, Some("ERR_INVALID_REQUEST")),
            "{path}: {body}"
        );
    }
    for (method, path) in [
        ("GET", "/unknowns/unknown-7"),
        ("POST", "/unknowns/unknown-7/ignore"),
        ("DELETE", "/unknowns/unknown-7"),
    ] {
        let (status, body) = s.call(method, path, None);
        assert_eq!(
            (status, body["code"].as_str()),
            (404, Some("ERR_NOT_FOUND")),
            "{path}: {body}"
        );
    }
    let (status, body) = s.call(
        "POST",
        "/unknowns/unknown-7/enrol",
        Some(&json!({"collection_name": "staff", "person_name": "x"})),
    );
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("ERR_NOT_FOUND")),
        "{body}"
    );
    for query in ["limit=0", "limit=501", "cursor=unknown-3"] {
        let (status, body) = s.call("GET", &format!("/unknowns?{query}"), None);
        assert_eq!(
            (status, body["code"].as_str()),
            (422, Some("ERR_INVALID_REQUEST")),
            "{query}: {body}"
        );
    }
    let (_, persons) = s.call("GET", "/persons?collection_name=staff", None);
    assert_eq!(persons["persons"], json!([]));
    // No camera: no snapshot, a clear 404.
    let (status, body) = s.call("GET", "/cameras/front/snapshot", None);
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("ERR_NOT_FOUND")),
        "{body}"
    );
    // An edit of nobody is a 404; a bad field a 422 naming it.
    let (status, _) = s.call(
        "PATCH",
        "/person/staff/nobody",
        Some(&json!({"person_name": "x"})),
    );
    assert_eq!(status, 404);
    let (status, body) = s.call(
        "PATCH",
        "/person/staff/nobody",
        Some(&json!({"access": {"doors": "main"}})),
    );
    assert_eq!(status, 422, "{body}");
}

#[test]
fn a_live_event_stream_outlives_the_request_timeouts_and_ends_at_shutdown() {
    use std::io::{BufRead, BufReader, Write};
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start_with(
        &dir.path().join("data"),
        &Options {
            config: "[inference]\nembedder = \"dlib128\"\n\
                     [server]\nrequest_timeout_s = 2\nheader_read_timeout_s = 1\n"
                .into(),
            ..Options::default()
        },
    )
    .unwrap();
    let address = s.url.trim_start_matches("http://").to_owned();
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    write!(
        stream,
        "GET /events/stream HTTP/1.1\r\nHost: {address}\r\nx-api-key: {KEY}\r\n\r\n"
    )
    .unwrap();
    stream
        .set_read_timeout(Some(common::patience(Duration::from_secs(10))))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    // Past both timeouts (1 s for headers, 2 s for a request), the quiet stream is kept open
    // with a comment line every 5 s.
    let opened = Instant::now();
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "the stream was closed"
        );
        if line.trim_end().ends_with(':') || line.starts_with(':') {
            break;
        }
    }
    assert!(
        opened.elapsed() >= Duration::from_secs(3),
        "{:?}",
        opened.elapsed()
    );
    // SIGTERM with the stream open: it ends, and the server stops well within its 5 s grace.
    let stopping = Instant::now();
    let exit = s.stop();
    assert!(exit.success(), "{exit:?}");
    assert!(
        stopping.elapsed() < Duration::from_secs(4),
        "the open stream held the shutdown for {:?}",
        stopping.elapsed()
    );
}
