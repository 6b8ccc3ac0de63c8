//! The HTTP API against the contract (`docs/api.md`): a real `facegate serve`
//! on an ephemeral port, real LMDB in a temp dir, real models on the fixture photos.

mod common;

use common::server::{b64, item_codes, no_face_jpeg, side_by_side, unb64, Options, Server, KEY};
use common::{fixture_bytes, png_claiming};
use serde_json::{json, Value};

fn start() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    (dir, server)
}

fn photo(name: &str) -> String {
    b64(&fixture_bytes(name))
}

fn create_collection(s: &Server, name: &str) {
    let (status, body) = s.call("POST", "/collection", Some(&json!({"name": name})));
    assert_eq!(status, 200, "{body}");
}

fn enrol(s: &Server, collection: &str, id: &str, name: &str, image: &str) -> (u16, Value) {
    s.call(
        "PUT",
        "/person",
        Some(&json!({
            "person_id": id,
            "person_name": name,
            "collection_name": collection,
            "face_base_64": image,
        })),
    )
}

fn assert_error(result: (u16, Value), status: u16, code: &str) -> Value {
    let (got_status, body) = result;
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(got_status, status, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    body
}

#[test]
fn protected_endpoints_need_a_valid_key_and_health_does_not() {
    let (_d, s) = start();
    let body = json!({"name": "staff"});
    let missing = s.call_with_key("POST", "/collection", Some(&body), None);
    let e = assert_error(missing, 401, "ERR_API_KEY_NOT_PRESENT");
    assert_eq!(e["message"], "The API key is missing from the request.");
    let wrong = s.call_with_key("POST", "/collection", Some(&body), Some("nope"));
    assert_error(wrong, 403, "ERR_API_KEY_NOT_VALID");
    for path in ["/collections", "/persons?collection_name=staff"] {
        assert_error(
            s.call_with_key("GET", path, None, None),
            401,
            "ERR_API_KEY_NOT_PRESENT",
        );
    }
    // Without a key /health says only whether it is up; with one, everything.
    let (status, health) = s.call_with_key("GET", "/health", None, None);
    assert_eq!(status, 200);
    assert_eq!(health["status"], "ok");
    assert!(health["version"].is_string());
    assert!(
        health.get("models").is_none() && health.get("store").is_none(),
        "{health}"
    );
    let (_, health) = s.call("GET", "/health", None);
    assert_eq!(health["auth"], "api_key");
    assert_eq!(health["models"]["embedder"], "arcface512");
    // Nothing was created by the refused requests.
    let (_, list) = s.call("GET", "/collections", None);
    assert_eq!(list["count"], 0);
}

#[test]
fn a_client_guessing_keys_is_rate_limited_but_a_valid_key_still_gets_in() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        config: "[server]\nauth_failures_per_minute = 3\n".into(),
        ..Options::default()
    };
    let s = Server::start_with(&dir.path().join("data"), &options).unwrap();
    for guess in ["a", "b", "c"] {
        assert_error(
            s.call_with_key("GET", "/collections", None, Some(guess)),
            403,
            "ERR_API_KEY_NOT_VALID",
        );
    }
    let e = assert_error(
        s.call_with_key("GET", "/collections", None, Some("d")),
        429,
        "ERR_RATE_LIMITED",
    );
    assert!(e["message"].is_string());
    // The key is checked first: the throttle never locks out a client that has it.
    assert_eq!(s.call("GET", "/collections", None).0, 200);
    // Health stays reachable for monitoring.
    assert_eq!(s.call_with_key("GET", "/health", None, None).0, 200);
}

#[test]
fn collections_are_created_listed_read_and_deleted() {
    let (_d, s) = start();
    let (status, body) = s.call("POST", "/collection", Some(&json!({"name": "staff"})));
    assert_eq!(
        (status, body),
        (200, json!({"name": "staff", "num_persons": 0}))
    );
    assert_error(
        s.call("POST", "/collection", Some(&json!({"name": "staff"}))),
        409,
        "ERR_ALREADY_EXISTS",
    );
    for bad in ["bad name", "", "a/b", "ü"] {
        let e = assert_error(
            s.call("POST", "/collection", Some(&json!({"name": bad}))),
            400,
            "ERR_INVALID_COLLECTION_NAME",
        );
        assert_eq!(
            e["message"],
            "Collection names can only contain alphanumeric characters, underscores, hyphens, and periods."
        );
    }
    create_collection(&s, "visitors.2026");
    let (_, list) = s.call("GET", "/collections?take=1&order=DESC", None);
    assert_eq!(list["count"], 2);
    assert_eq!(list["collections"][0]["name"], "visitors.2026");
    assert_eq!(list["collections"].as_array().unwrap().len(), 1);
    let (_, list) = s.call("GET", "/collections?search=STA", None);
    assert_eq!(list["count"], 1);
    assert_error(
        s.call("GET", "/collections?take=500", None),
        422,
        "ERR_INVALID_REQUEST",
    );
    let (status, one) = s.call("GET", "/collection/staff", None);
    assert_eq!(status, 200);
    assert_eq!(one["num_persons"], 0);
    assert!(one["created_at"].as_str().unwrap().ends_with('Z'));
    assert_error(
        s.call("GET", "/collection/nobody", None),
        404,
        "ERR_NOT_FOUND",
    );
    // DELETE with a body, and with ?name= for clients that drop DELETE bodies.
    let (status, body) = s.call("DELETE", "/collection", Some(&json!({"name": "staff"})));
    assert_eq!(
        (status, body),
        (200, json!({"name": "staff", "num_persons": 0}))
    );
    let (status, _) = s.call("DELETE", "/collection?name=visitors.2026", None);
    assert_eq!(status, 200);
    assert_error(
        s.call("DELETE", "/collection", Some(&json!({"name": "staff"}))),
        404,
        "ERR_NOT_FOUND",
    );
}

#[test]
fn a_person_is_enrolled_read_updated_listed_and_deleted() {
    let (_d, s) = start();
    create_collection(&s, "staff");
    let (status, p) = s.call(
        "PUT",
        "/person",
        Some(&json!({
            "person_id": "obama",
            "person_name": "Barack Obama",
            "collection_name": "staff",
            "face_base_64": photo("obama.jpg"),
            "metadata": {"badge": "44"},
        })),
    );
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["person_id"], "obama");
    assert_eq!(p["person_name"], "Barack Obama");
    assert_eq!(p["collection_name"], "staff");
    assert_eq!(p["metadata"], json!({"badge": "44"}));
    assert_eq!(p["num_faces"], 1);
    // Default storage keeps the aligned face crop as a JPEG thumbnail.
    let thumb = image::load_from_memory(&unb64(p["face_base_64"].as_str().unwrap())).unwrap();
    assert_eq!((thumb.width(), thumb.height()), (160, 160));
    let created = p["created_at"].as_str().unwrap().to_owned();

    let (status, got) = s.call("GET", "/person/staff/obama", None);
    assert_eq!(status, 200);
    assert_eq!(got["person_name"], "Barack Obama");

    // Upsert: same id, new name, no stored image; created_at is kept.
    let (status, p2) = s.call(
        "PUT",
        "/person",
        Some(&json!({
            "person_id": "obama",
            "person_name": "B. Obama",
            "collection_name": "staff",
            "face_base_64": photo("obama2.jpg"),
            "face_storage_type": "NoStorage",
        })),
    );
    assert_eq!(status, 200, "{p2}");
    assert_eq!(p2["face_base_64"], Value::Null);
    assert_eq!(p2["created_at"], created.as_str());
    let (_, c) = s.call("GET", "/collection/staff", None);
    assert_eq!(c["num_persons"], 1);

    let (status, full) = s.call(
        "PUT",
        "/person",
        Some(&json!({
            "person_id": "biden",
            "collection_name": "staff",
            "face_base_64": photo("biden.jpg"),
            "face_storage_type": "StoreFullImage",
        })),
    );
    assert_eq!(status, 200, "{full}");
    assert_eq!(
        unb64(full["face_base_64"].as_str().unwrap()),
        fixture_bytes("biden.jpg")
    );

    let (status, list) = s.call("GET", "/persons?collection_name=staff&order=ASC", None);
    assert_eq!(status, 200);
    assert_eq!(list["count"], 2);
    assert_eq!(list["persons"][0]["person_id"], "biden");
    assert_error(
        s.call("GET", "/persons?collection_name=none", None),
        404,
        "ERR_NOT_FOUND",
    );

    let (status, del) = s.call("DELETE", "/person/staff/obama", None);
    assert_eq!(
        (status, del),
        (
            200,
            json!({"collection_name": "staff", "person_id": "obama"})
        )
    );
    assert_error(
        s.call("GET", "/person/staff/obama", None),
        404,
        "ERR_NOT_FOUND",
    );
    assert_error(
        s.call("DELETE", "/person/staff/obama", None),
        404,
        "ERR_NOT_FOUND",
    );
    let (status, _) = s.call(
        "DELETE",
        "/person",
        Some(&json!({"collection_name": "staff", "person_id": "biden"})),
    );
    assert_eq!(status, 200);
    let (_, c) = s.call("GET", "/collection/staff", None);
    assert_eq!(c["num_persons"], 0);
}

#[test]
fn enrolment_errors_follow_the_contract_and_store_nothing() {
    let (_d, s) = start();
    create_collection(&s, "staff");
    let e = assert_error(
        enrol(&s, "staff", "x", "X", "%%% not base64 %%%"),
        400,
        "ERR_BASE64_IMAGE_CANNOT_BE_DECODED",
    );
    assert_eq!(
        e["message"],
        "The posted Base64 image(s) could not be decoded as JPEG/PNG bytes."
    );
    assert_error(
        enrol(&s, "staff", "x", "X", &b64(b"GIF89a definitely not a jpeg")),
        400,
        "ERR_BASE64_IMAGE_CANNOT_BE_DECODED",
    );
    let truncated = &fixture_bytes("obama.jpg")[..300];
    assert_error(
        enrol(&s, "staff", "x", "X", &b64(truncated)),
        400,
        "ERR_BASE64_IMAGE_CANNOT_BE_DECODED",
    );
    assert_error(
        enrol(&s, "staff", "x", "X", &b64(&no_face_jpeg())),
        400,
        "ERR_FACE_NOT_DETECTED",
    );
    assert_error(
        enrol(
            &s,
            "staff",
            "x",
            "X",
            &b64(&side_by_side(&["obama.jpg", "biden.jpg"], 400)),
        ),
        400,
        "ERR_MULTIPLE_FACES",
    );
    assert_error(
        enrol(&s, "staff", "x", "X", &b64(&png_claiming(10_000, 10_000))),
        413,
        "ERR_IMAGE_TOO_LARGE",
    );
    assert_error(
        enrol(&s, "nobody", "x", "X", &photo("obama.jpg")),
        404,
        "ERR_NOT_FOUND",
    );
    assert_error(
        enrol(&s, "bad name", "x", "X", &photo("obama.jpg")),
        400,
        "ERR_INVALID_COLLECTION_NAME",
    );
    assert_error(
        enrol(&s, "staff", &"x".repeat(129), "X", &photo("obama.jpg")),
        422,
        "ERR_INVALID_REQUEST",
    );
    // Wrong types and missing fields name the field.
    let e = assert_error(
        s.call(
            "PUT",
            "/person",
            Some(&json!({"person_id": 7, "collection_name": "staff", "face_base_64": "x"})),
        ),
        422,
        "ERR_INVALID_REQUEST",
    );
    assert!(e["message"].as_str().unwrap().contains("person_id"), "{e}");
    let e = assert_error(
        s.call(
            "PUT",
            "/person",
            Some(&json!({"person_id": "a", "collection_name": "staff",
                         "face_base_64": photo("obama.jpg"), "metadata": {"k": 1}})),
        ),
        422,
        "ERR_INVALID_REQUEST",
    );
    assert!(e["message"].as_str().unwrap().contains("metadata.k"), "{e}");
    let e = assert_error(
        s.call(
            "PUT",
            "/person",
            Some(&json!({"person_id": "a", "collection_name": "staff"})),
        ),
        422,
        "ERR_INVALID_REQUEST",
    );
    assert!(
        e["message"].as_str().unwrap().contains("face_base_64"),
        "{e}"
    );
    assert_error(
        s.call_raw("PUT", "/person", b"{not json"),
        422,
        "ERR_INVALID_REQUEST",
    );
    let e = assert_error(
        s.call(
            "PUT",
            "/person",
            Some(&json!({"person_id": "a", "collection_name": "staff",
                         "face_base_64": photo("obama.jpg"), "face_storage_type": "Everything"})),
        ),
        422,
        "ERR_INVALID_REQUEST",
    );
    assert!(
        e["message"].as_str().unwrap().contains("face_storage_type"),
        "{e}"
    );
    let (_, c) = s.call("GET", "/collection/staff", None);
    assert_eq!(c["num_persons"], 0, "a refused enrolment stored nothing");
}

#[test]
fn an_oversize_body_is_refused_with_413() {
    use std::io::{Read, Write};
    let (_d, s) = start();
    create_collection(&s, "staff");
    let body = format!(
        r#"{{"person_id":"a","collection_name":"staff","face_base_64":"{}"}}"#,
        "A".repeat(17 << 20)
    );
    // The server may answer before the body is all sent and close the connection, so the
    // body is written from another thread and the answer read here, whatever happens to the
    // upload.
    let addr = s.url.trim_start_matches("http://").to_owned();
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    let head = format!(
        "PUT /person HTTP/1.1\r\nhost: {addr}\r\nx-api-key: {KEY}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let upload = std::thread::spawn(move || {
        let _ = writer.write_all(body.as_bytes());
    });
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let _ = upload.join();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("ERR_PAYLOAD_TOO_LARGE"), "{text}");
    let (_, c) = s.call("GET", "/collection/staff", None);
    assert_eq!(c["num_persons"], 0);
}

#[test]
fn duplicate_faces_are_refused_when_check_duplicates_is_set() {
    let (_d, s) = start();
    create_collection(&s, "staff");
    assert_eq!(
        enrol(&s, "staff", "obama", "Obama", &photo("obama.jpg")).0,
        200
    );
    let body = |id: &str, check: bool| {
        json!({
            "person_id": id,
            "collection_name": "staff",
            "face_base_64": photo("obama2.jpg"),
            "check_duplicates": check,
        })
    };
    let e = assert_error(
        s.call("PUT", "/person", Some(&body("impostor", true))),
        409,
        "ERR_DUPLICATE_PERSON",
    );
    assert_eq!(e["metadata"]["person_id"], "obama");
    assert_error(
        s.call("GET", "/person/staff/impostor", None),
        404,
        "ERR_NOT_FOUND",
    );
    // Re-enrolling the same person is not a duplicate; another face is not either.
    assert_eq!(s.call("PUT", "/person", Some(&body("obama", true))).0, 200);
    let biden = json!({"person_id": "biden", "collection_name": "staff",
                       "face_base_64": photo("biden.jpg"), "check_duplicates": true});
    assert_eq!(s.call("PUT", "/person", Some(&biden)).0, 200);
    // Without the check the same face may be enrolled twice (upstream behaviour).
    assert_eq!(s.call("PUT", "/person", Some(&body("twin", false))).0, 200);
}

#[test]
fn bulk_enrolment_answers_every_item_in_order_and_stores_only_the_good_ones() {
    let (_d, s) = start();
    create_collection(&s, "staff");
    let body = json!({
        "collection_name": "staff",
        "face_storage_type": "NoStorage",
        "Persons": [
            {"person_id": "obama", "person_name": "Obama", "face_base_64": photo("obama.jpg")},
            {"person_id": "garbage", "person_name": "G", "face_base_64": "@@@"},
            {"person_id": "nobody", "person_name": "N", "face_base_64": b64(&no_face_jpeg())},
            {"person_id": "pair", "person_name": "P",
             "face_base_64": b64(&side_by_side(&["obama.jpg", "biden.jpg"], 400))},
            {"person_id": 12, "face_base_64": photo("biden.jpg")},
            {"person_id": "biden", "person_name": "Biden", "face_base_64": photo("biden.jpg"),
             "metadata": {"team": "b"}},
        ]
    });
    let (status, results) = s.call("PUT", "/persons", Some(&body));
    assert_eq!(status, 200, "{results}");
    let codes = item_codes(&results);
    assert_eq!(
        codes,
        [
            "OK",
            "ERR_BASE64_IMAGE_CANNOT_BE_DECODED",
            "ERR_FACE_NOT_DETECTED",
            "ERR_MULTIPLE_FACES",
            "ERR_INVALID_REQUEST",
            "OK"
        ]
    );
    for (i, id) in [
        (0, "obama"),
        (1, "garbage"),
        (2, "nobody"),
        (3, "pair"),
        (5, "biden"),
    ] {
        assert_eq!(results[i]["metadata"]["person_id"], id);
    }
    let (_, list) = s.call("GET", "/persons?collection_name=staff", None);
    let ids: Vec<&str> = list["persons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["person_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["biden", "obama"]);
    assert_eq!(list["persons"][0]["metadata"], json!({"team": "b"}));
    // A request-level problem fails the whole request.
    let unknown = json!({"collection_name": "none", "persons": []});
    assert_error(
        s.call("PUT", "/persons", Some(&unknown)),
        404,
        "ERR_NOT_FOUND",
    );
}

#[test]
fn face_search_ranks_by_score_and_honours_threshold_and_max_results() {
    let (_d, s) = start();
    create_collection(&s, "staff");
    assert_eq!(
        enrol(&s, "staff", "obama", "Obama", &photo("obama.jpg")).0,
        200
    );
    assert_eq!(
        enrol(&s, "staff", "biden", "Biden", &photo("biden.jpg")).0,
        200
    );
    let search = |extra: Value| {
        let mut body = json!({"collection_name": "staff", "face_base_64": photo("obama2.jpg")});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        s.call("POST", "/face-search", Some(&body))
    };
    let (status, hits) = search(json!({}));
    assert_eq!(status, 200, "{hits}");
    let hits = hits.as_array().unwrap();
    assert_eq!(hits.len(), 1, "max_results defaults to 1");
    assert_eq!(hits[0]["person_id"], "obama");
    assert_eq!(hits[0]["person_name"], "Obama");
    let top = hits[0]["similarity_score"].as_f64().unwrap();
    assert!(top >= 0.7, "{top}");
    assert!(hits[0]["face_base_64"].is_string());

    let (_, all) = search(json!({"min_similarity_score": 0.0, "max_results": 5}));
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[1]["person_id"], "biden");
    let second = all[1]["similarity_score"].as_f64().unwrap();
    assert!(second < 0.7 && second <= top, "{second}");

    // A threshold between the two scores keeps only the better one.
    let (_, above) = search(json!({"min_similarity_score": second + 0.01, "max_results": 5}));
    assert_eq!(above.as_array().unwrap().len(), 1, "{above}");
    // With the match deleted nothing reaches 0.7: an empty result is a success.
    assert_eq!(s.call("DELETE", "/person/staff/obama", None).0, 200);
    let (status, none) = search(json!({}));
    assert_eq!((status, none), (200, json!([])));
    assert_error(
        search(json!({"min_similarity_score": 1.5})),
        422,
        "ERR_INVALID_REQUEST",
    );
    assert_error(
        search(json!({"max_results": "three"})),
        422,
        "ERR_INVALID_REQUEST",
    );
    assert_error(
        s.call(
            "POST",
            "/face-search",
            Some(&json!({"collection_name": "staff", "face_base_64": b64(&no_face_jpeg())})),
        ),
        400,
        "ERR_FACE_NOT_DETECTED",
    );
    assert_error(
        s.call(
            "POST",
            "/face-search",
            Some(&json!({"collection_name": "staff",
                            "face_base_64": b64(&side_by_side(&["obama.jpg", "biden.jpg"], 400))})),
        ),
        400,
        "ERR_MULTIPLE_FACES",
    );
    assert_error(
        s.call(
            "POST",
            "/face-search",
            Some(&json!({"collection_name": "ghost", "face_base_64": photo("obama2.jpg")})),
        ),
        404,
        "ERR_NOT_FOUND",
    );
}

#[test]
fn multi_face_search_names_enrolled_faces_and_returns_the_others_as_thumbnails() {
    let (_d, s) = start();
    create_collection(&s, "staff");
    assert_eq!(
        enrol(&s, "staff", "obama", "Obama", &photo("obama.jpg")).0,
        200
    );
    let group = side_by_side(&["obama2.jpg", "biden.jpg", "obama3.jpg"], 400);
    let (status, out) = s.call(
        "POST",
        "/multi-face-search",
        Some(&json!({"collection_name": "staff", "multi_face_img_base_64": b64(&group)})),
    );
    assert_eq!(status, 200, "{out}");
    let found = out["person_search_results"].as_array().unwrap();
    assert_eq!(
        found.len(),
        1,
        "obama appears once, with the better score: {out}"
    );
    assert_eq!(found[0]["person_id"], "obama");
    let unknown = out["unrecognized_face_thumbnails_base_64"]
        .as_array()
        .unwrap();
    assert_eq!(unknown.len(), 1, "biden is not enrolled");
    let thumb = image::load_from_memory(&unb64(unknown[0].as_str().unwrap())).unwrap();
    assert_eq!(thumb.width(), 160);

    // The six faces of a group photo, none enrolled: six thumbnails.
    let (_, out) = s.call(
        "POST",
        "/multi-face-search",
        Some(&json!({"collection_name": "staff", "multi_face_img_base_64": photo("t1.jpg")})),
    );
    assert_eq!(out["person_search_results"], json!([]));
    assert_eq!(
        out["unrecognized_face_thumbnails_base_64"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
    assert_error(
        s.call(
            "POST",
            "/multi-face-search",
            Some(&json!({"collection_name": "staff",
                            "multi_face_img_base_64": b64(&no_face_jpeg())})),
        ),
        400,
        "ERR_FACE_NOT_DETECTED",
    );
}

/// A fixture photo re-encoded as lossless WebP, as a phone or browser might send it.
fn webp_photo(name: &str) -> String {
    let img = image::load_from_memory(&fixture_bytes(name))
        .unwrap()
        .to_rgb8();
    let mut out = Vec::new();
    image::codecs::webp::WebPEncoder::new_lossless(&mut out)
        .encode(
            img.as_raw(),
            img.width(),
            img.height(),
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();
    b64(&out)
}

#[test]
fn a_webp_photo_enrols_and_matches_like_the_jpeg_it_came_from() {
    let (_d, s) = start();
    create_collection(&s, "staff");
    let (status, body) = enrol(
        &s,
        "staff",
        "obama",
        "Barack Obama",
        &webp_photo("obama.jpg"),
    );
    assert_eq!(status, 200, "{body}");
    let (status, found) = s.call(
        "POST",
        "/face-search",
        Some(&json!({"collection_name": "staff", "face_base_64": photo("obama2.jpg")})),
    );
    assert_eq!(status, 200, "{found}");
    assert_eq!(found[0]["person_id"], "obama", "{found}");
    let (_, webp) = s.call(
        "POST",
        "/compare",
        Some(&json!({"face_base_64": webp_photo("obama.jpg"), "ref_face_base_64": photo("obama.jpg")})),
    );
    assert!(
        webp["similarity_score"].as_f64().unwrap() > 0.99,
        "lossless WebP is the same picture: {webp}"
    );
}

#[test]
fn compare_matches_the_same_person_and_not_another() {
    let (_d, s) = start();
    let cmp = |a: &str, b: &str| {
        s.call(
            "POST",
            "/compare",
            Some(&json!({"face_base_64": photo(a), "ref_face_base_64": photo(b)})),
        )
    };
    let (status, same) = cmp("obama.jpg", "obama2.jpg");
    assert_eq!(status, 200);
    assert_eq!(same["is_match"], true);
    assert!(same["similarity_score"].as_f64().unwrap() >= 0.7);
    let (_, other) = cmp("obama.jpg", "biden.jpg");
    assert_eq!(other["is_match"], false);
    assert!(other["similarity_score"].as_f64().unwrap() < 0.7);
    assert_error(
        s.call(
            "POST",
            "/compare",
            Some(&json!({"face_base_64": photo("obama.jpg"),
                            "ref_face_base_64": b64(&no_face_jpeg())})),
        ),
        400,
        "ERR_FACE_NOT_DETECTED",
    );
    assert_error(
        s.call(
            "POST",
            "/compare",
            Some(&json!({"face_base_64": photo("obama.jpg")})),
        ),
        422,
        "ERR_INVALID_REQUEST",
    );
}

#[test]
fn liveness_reports_every_check_and_gates_enrolment_search_and_compare() {
    let (_d, s) = start();
    let (status, v) = s.call(
        "POST",
        "/liveness",
        Some(&json!({"face_base_64": photo("obama.jpg")})),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["is_live"], true, "{v}");
    assert_eq!(v["metadata"]["code"], "OK");
    let checks = v["metadata"]["checks"].as_array().unwrap();
    assert!(
        checks.iter().any(|c| c["name"] == "pad_live_probability"),
        "{v}"
    );
    assert!(
        checks
            .iter()
            .all(|c| c["result"] == "passed" && c["limit"].is_string()),
        "{v}"
    );
    let (_, v) = s.call(
        "POST",
        "/liveness",
        Some(&json!({"face_base_64": b64(&no_face_jpeg())})),
    );
    assert_eq!(v["is_live"], false);
    assert_eq!(v["metadata"]["code"], "FACE_NOT_FOUND");

    // check_liveness: a good photo enrols; a photo failing a check is refused with the
    // upstream code in metadata, and nothing is stored.
    create_collection(&s, "staff");
    let enrol_checked = |id: &str, image: String| {
        s.call(
            "PUT",
            "/person",
            Some(&json!({"person_id": id, "collection_name": "staff",
            "face_base_64": image, "check_liveness": true})),
        )
    };
    assert_eq!(enrol_checked("obama", photo("obama.jpg")).0, 200);
    let img = image::load_from_memory(&fixture_bytes("obama.jpg"))
        .unwrap()
        .to_rgb8();
    let small = image::imageops::resize(
        &img,
        img.width() / 2,
        img.height() / 2,
        image::imageops::FilterType::Triangle,
    );
    let e = assert_error(
        enrol_checked("small", b64(&common::server::jpeg(&small))),
        400,
        "ERR_LIVENESS_ERROR",
    );
    assert_eq!(e["metadata"]["code"], "FACE_TOO_SMALL", "{e}");
    assert!(e["metadata"]["checks"].is_array(), "{e}");
    let (_, c) = s.call("GET", "/collection/staff", None);
    assert_eq!(c["num_persons"], 1);
    let (status, hits) = s.call(
        "POST",
        "/face-search",
        Some(&json!({"collection_name": "staff",
        "face_base_64": photo("obama2.jpg"), "check_liveness": true})),
    );
    assert_eq!(status, 200, "{hits}");
    assert_eq!(hits[0]["person_id"], "obama");
    assert_error(
        s.call(
            "POST",
            "/compare",
            Some(&json!({"face_base_64": b64(&common::server::jpeg(&small)),
            "ref_face_base_64": photo("obama.jpg"), "check_liveness": true})),
        ),
        400,
        "ERR_LIVENESS_ERROR",
    );
}

#[test]
fn without_a_pad_model_no_face_is_reported_live() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        config: "[liveness]\npad_enabled = false\n".into(),
        ..Options::default()
    };
    let s = Server::start_with(&dir.path().join("data"), &options).unwrap();
    let (_, v) = s.call(
        "POST",
        "/liveness",
        Some(&json!({"face_base_64": photo("obama.jpg")})),
    );
    assert_eq!(v["is_live"], false);
    assert_eq!(v["metadata"]["code"], "UNKNOWN_ERROR");
    let checks = v["metadata"]["checks"].as_array().unwrap();
    assert!(
        checks
            .iter()
            .any(|c| c["name"] == "pad" && c["result"] == "not_run"),
        "{v}"
    );
}

#[test]
fn detect_reports_boxes_landmarks_scores_and_thumbnails() {
    let (_d, s) = start();
    let (status, faces) = s.call(
        "POST",
        "/detect",
        Some(&json!({"image_base_64": photo("t1.jpg")})),
    );
    assert_eq!(status, 200, "{faces}");
    let faces = faces.as_array().unwrap();
    assert_eq!(faces.len(), 6);
    for f in faces {
        assert!(f["box"]["right"].as_f64() > f["box"]["left"].as_f64());
        for k in ["left", "top", "right", "bottom"] {
            let v = f["box"][k].as_i64().unwrap_or(-1);
            assert!(
                (0..=2000).contains(&v),
                "box.{k}: whole pixels in the image: {f}"
            );
        }
        assert!(f["landmarks"]["left_eye"]["x"].is_number());
        assert!(f["detection_score"].as_f64().unwrap() > 0.5);
        assert!(f["thumbnail_base_64"].is_string());
    }
    let (_, none) = s.call(
        "POST",
        "/detect",
        Some(&json!({"image_base_64": b64(&no_face_jpeg())})),
    );
    assert_eq!(none, json!([]));
}

#[test]
fn enrolments_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut s = Server::start(&data);
    create_collection(&s, "staff");
    assert_eq!(
        enrol(&s, "staff", "obama", "Obama", &photo("obama.jpg")).0,
        200
    );
    assert!(s.stop().success(), "SIGTERM stops it cleanly");
    let s = Server::start(&data);
    let (_, c) = s.call("GET", "/collection/staff", None);
    assert_eq!(c["num_persons"], 1);
    let (_, hits) = s.call(
        "POST",
        "/face-search",
        Some(&json!({"collection_name": "staff", "face_base_64": photo("obama2.jpg")})),
    );
    assert_eq!(hits[0]["person_id"], "obama", "{hits}");
}

#[test]
fn a_full_inference_queue_answers_busy_at_once_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        config: "[server]\ninference_workers = 1\ninference_queue = 1\n".into(),
        ..Options::default()
    };
    let s = Server::start_with(&dir.path().join("data"), &options).unwrap();
    let body = json!({"image_base_64": photo("t1.jpg")});
    let url = s.url.clone();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (url, body) = (url.clone(), body.clone());
            std::thread::spawn(move || {
                match ureq::post(&format!("{url}/detect"))
                    .set("x-api-key", KEY)
                    .send_json(body)
                {
                    Ok(r) => (r.status(), None),
                    Err(ureq::Error::Status(code, r)) => {
                        (code, r.header("retry-after").map(str::to_owned))
                    }
                    Err(e) => panic!("{e}"),
                }
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let busy: Vec<_> = results.iter().filter(|(c, _)| *c == 503).collect();
    assert!(!busy.is_empty(), "{results:?}");
    assert!(
        busy.iter().all(|(_, retry)| retry.as_deref() == Some("1")),
        "{results:?}"
    );
    assert!(results.iter().any(|(c, _)| *c == 200), "{results:?}");
}

#[test]
fn openapi_swagger_ui_and_metrics_are_served_from_the_binary() {
    let (_d, s) = start();
    let (status, spec) = s.call_with_key("GET", "/openapi.json", None, None);
    assert_eq!(status, 200);
    for path in [
        "/collection",
        "/person",
        "/persons",
        "/face-search",
        "/multi-face-search",
        "/compare",
    ] {
        assert!(spec["paths"][path].is_object(), "spec lacks {path}");
    }
    let (status, html) = s.get_text("/docs/");
    assert_eq!(status, 200);
    assert!(html.contains("swagger"), "{html}");
    assert!(!html.contains("cdn."), "the UI must not load from a CDN");
    let (status, js) = s.get_text("/docs/swagger-ui-bundle.js");
    assert_eq!(status, 200);
    assert!(js.len() > 100_000);
    let _ = s.call("GET", "/collections", None);
    let (status, text) = s.get_text("/metrics");
    assert_eq!(status, 200);
    assert!(
        text.contains(
            r#"facegate_http_requests_total{method="GET",route="/collections",status="200"} 1"#
        ),
        "{text}"
    );
    assert_error(
        s.call("GET", "/no/such/endpoint", None),
        404,
        "ERR_NOT_FOUND",
    );
}

#[test]
fn the_server_refuses_to_start_without_a_key_unless_told_it_is_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        no_key: true,
        ..Options::default()
    };
    let err = Server::start_with(&dir.path().join("a"), &options)
        .err()
        .expect("refused");
    assert!(err.contains("no API key is configured"), "{err}");
    let options = Options {
        no_key: true,
        extra_args: vec!["--insecure-no-auth".into()],
        ..Options::default()
    };
    let s = Server::start_with(&dir.path().join("b"), &options).unwrap();
    let (_, health) = s.call_with_key("GET", "/health", None, None);
    assert!(
        health["auth"].as_str().unwrap().starts_with("DISABLED"),
        "{health}"
    );
    let (status, _) = s.call_with_key("GET", "/collections", None, None);
    assert_eq!(status, 200);
    // A key in a key file works too.
    let key_file = dir.path().join("keys");
    std::fs::write(&key_file, "# site keys\nfile-key-1\n").unwrap();
    let options = Options {
        no_key: true,
        config: format!(
            "[server]\napi_key_file = {:?}\n",
            key_file.display().to_string()
        ),
        ..Options::default()
    };
    let s = Server::start_with(&dir.path().join("c"), &options).unwrap();
    assert_eq!(
        s.call_with_key("GET", "/collections", None, Some("file-key-1"))
            .0,
        200
    );
    assert_eq!(
        s.call_with_key("GET", "/collections", None, Some(KEY)).0,
        403
    );
}

#[test]
fn a_store_enrolled_with_another_embedder_is_refused_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    drop(Server::start(&data));
    let options = Options {
        config: "[inference]\nembedder = \"dlib128\"\n".into(),
        ..Options::default()
    };
    let err = Server::start_with(&data, &options).err().expect("refused");
    // arcface512 or arcface512-int8: precision "auto" chose by timing both on this machine.
    assert!(
        err.contains("model arcface512") && err.contains("with dlib128@"),
        "{err}"
    );
    assert!(err.contains("re-enrol"), "{err}");
}

/// A client that knows only the upstream documentation: every documented field sent, with
/// the documented types and defaults, nothing facegate-specific.
#[test]
fn an_upstream_client_flow_works_end_to_end() {
    let (_d, s) = start();
    create_collection(&s, "employees");
    let (status, _) = s.call(
        "PUT",
        "/person",
        Some(&json!({
            "person_id": "E001",
            "person_name": "Barack",
            "collection_name": "employees",
            "face_base_64": photo("obama.jpg"),
            "face_storage_type": "StoreThumbnails",
            "metadata": {"department": "exec"},
            "check_duplicates": false,
            "duplicate_check_min_similarity": 0.7,
            "check_liveness": false
        })),
    );
    assert_eq!(status, 200);
    let (status, bulk) = s.call(
        "PUT",
        "/persons",
        Some(&json!({
            "collection_name": "employees",
            "face_storage_type": "NoStorage",
            "Persons": [{"person_id": "E002", "person_name": "Joe",
                         "face_base_64": photo("biden.jpg"), "metadata": {}}]
        })),
    );
    assert_eq!(status, 200);
    assert_eq!(bulk[0]["code"], "OK");
    let (_, hits) = s.call(
        "POST",
        "/face-search",
        Some(
            &json!({"collection_name": "employees", "face_base_64": photo("obama2.jpg"),
                     "min_similarity_score": 0.7, "max_results": 1, "check_liveness": false}),
        ),
    );
    assert_eq!(hits[0]["person_id"], "E001");
    let (_, multi) = s.call(
        "POST",
        "/multi-face-search",
        Some(&json!({"collection_name": "employees", "min_similarity_score": 0.7,
                     "multi_face_img_base_64": b64(&side_by_side(&["obama2.jpg", "biden.jpg"], 400))})),
    );
    let mut ids: Vec<&str> = multi["person_search_results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["person_id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["E001", "E002"], "{multi}");
    let (_, cmp) = s.call(
        "POST",
        "/compare",
        Some(
            &json!({"face_base_64": photo("obama2.jpg"), "ref_face_base_64": photo("obama.jpg"),
                     "min_similarity_score": 0.7, "check_liveness": false}),
        ),
    );
    assert_eq!(cmp["is_match"], true);
    let (status, del) = s.call("DELETE", "/collection", Some(&json!({"name": "employees"})));
    assert_eq!(status, 200);
    assert_eq!(del["num_persons"], 2);
}

#[test]
fn the_enroll_command_enrols_a_folder_of_photos_through_the_api() {
    let (dir, s) = start();
    let photos = dir.path().join("photos");
    std::fs::create_dir(&photos).unwrap();
    std::fs::write(photos.join("obama.jpg"), fixture_bytes("obama.jpg")).unwrap();
    std::fs::write(photos.join("biden.jpg"), fixture_bytes("biden.jpg")).unwrap();
    std::fs::write(photos.join("wall.jpg"), no_face_jpeg()).unwrap();
    std::fs::write(photos.join("notes.txt"), "not a photo").unwrap();
    let out = common::facegate_command()
        .args([
            "enroll",
            "--url",
            &s.url,
            "--collection",
            "staff",
            "--create",
        ])
        .arg(&photos)
        .env("FACEGATE_API_KEY", KEY)
        .output()
        .unwrap();
    let results: Value = serde_json::from_slice(&out.stdout).unwrap();
    let codes: Vec<(&str, &str)> = results
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["person_id"].as_str().unwrap(),
                r["code"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        codes,
        [
            ("biden", "OK"),
            ("obama", "OK"),
            ("wall", "ERR_FACE_NOT_DETECTED")
        ]
    );
    assert!(
        !out.status.success(),
        "a photo that was not enrolled fails the command"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 of 3 photos were not enrolled"));
    let (_, c) = s.call("GET", "/collection/staff", None);
    assert_eq!(c["num_persons"], 2);
}

#[test]
fn precision_auto_times_both_models_for_a_new_store_and_keeps_the_recorded_choice_after() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let info_log = Options {
        env: vec![("FACEGATE_LOG".into(), "warn,facegate_daemon=info".into())],
        ..Options::default()
    };
    let fingerprint = |s: &Server| {
        let (_, health) = s.call("GET", "/health", None);
        health["models"]["fingerprint"].as_str().unwrap().to_owned()
    };
    let mut s = Server::start_with(&data, &info_log).unwrap();
    let first = fingerprint(&s);
    let log = s.wait_for_log("both models timed");
    let timed = log
        .lines()
        .find(|l| l.contains("both models timed for the new store"))
        .unwrap_or_else(|| panic!("no timing line in the log:\n{log}"));
    assert!(
        timed.contains("fp32_ms=Some(") && timed.contains("int8_ms=Some("),
        "{timed}"
    );
    // The fingerprint names the model the timing chose.
    let chose_int8 = timed.contains("precision=Int8");
    assert_eq!(first.contains("-int8@"), chose_int8, "{first} / {timed}");
    s.stop();

    // Restarted: no new timing, the recorded model is kept.
    let mut s = Server::start_with(&data, &info_log).unwrap();
    assert_eq!(fingerprint(&s), first);
    let log = s.wait_for_log("the one recorded with the store");
    assert!(log.contains("the one recorded with the store"), "{log}");
    assert!(!log.contains("both models timed"), "{log}");
    s.stop();

    // A store made with fp32 explicitly is kept by `auto`, not refused, and the cameras'
    // engines embed with that model too (the daemon refuses to start a camera whose engine
    // does not match the store).
    let data2 = dir.path().join("data2");
    let explicit = Options {
        config: "[inference]\nprecision = \"fp32\"\n".into(),
        ..Options::default()
    };
    let mut s = Server::start_with(&data2, &explicit).unwrap();
    let made = fingerprint(&s);
    assert!(!made.contains("-int8@"), "{made}");
    s.stop();
    let with_camera = Options {
        config: format!(
            "[[cameras]]\nname = \"front\"\nsource = \"replay\"\npath = \"{}\"\nfps = 1.0\n\
             replay_loop = false\ncollection = \"staff\"\n",
            common::fixture("obama.jpg").display()
        ),
        ..info_log
    };
    let s = Server::start_with(&data2, &with_camera).unwrap_or_else(|log| panic!("{log}"));
    assert_eq!(fingerprint(&s), made);
}

fn face_ids(s: &Server, collection: &str, id: &str) -> Vec<u64> {
    let (status, body) = s.call("GET", &format!("/person/{collection}/{id}/faces"), None);
    assert_eq!(status, 200, "{body}");
    body["faces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["face_id"].as_u64().unwrap())
        .collect()
}

#[test]
fn a_person_has_several_faces_added_listed_matched_and_deleted() {
    let (_d, s) = start();
    create_collection(&s, "staff");
    assert_eq!(
        enrol(&s, "staff", "obama", "Obama", &photo("obama.jpg")).0,
        200
    );
    let faces = "/person/staff/obama/faces";
    let (status, added) = s.call(
        "POST",
        faces,
        Some(&json!({"face_base_64": photo("obama2.jpg")})),
    );
    assert_eq!(status, 200, "{added}");
    assert_eq!(added["num_faces"], 2);
    assert_eq!(added["face"]["face_id"], 2);
    assert!(added["face"]["face_base_64"].is_string(), "{added}");
    assert!(
        added["similarity_to_person"].as_f64().unwrap() >= 0.5,
        "{added}"
    );
    // Somebody else's face is not added to a person unless the operator insists.
    let biden = json!({"face_base_64": photo("biden.jpg")});
    let refused = assert_error(
        s.call("POST", faces, Some(&biden)),
        422,
        "ERR_FACE_DOES_NOT_MATCH_PERSON",
    );
    assert!(
        refused["metadata"]["similarity_to_person"]
            .as_f64()
            .unwrap()
            < 0.5
    );
    assert_eq!(face_ids(&s, "staff", "obama"), [1, 2], "nothing was stored");
    let insist = json!({"face_base_64": photo("biden.jpg"), "check_same_person": false,
        "face_storage_type": "NoStorage"});
    let (status, added) = s.call("POST", faces, Some(&insist));
    assert_eq!(status, 200, "{added}");
    assert_eq!(added["face"]["face_id"], 3);
    assert_eq!(added["face"]["face_base_64"], Value::Null);
    let (status, listed) = s.call("GET", faces, None);
    assert_eq!(status, 200);
    assert_eq!(listed["num_faces"], 3);
    assert_eq!(listed["faces"][0]["face_storage_type"], "StoreThumbnails");
    assert!(listed["faces"][1]["face_base_64"].is_string());
    assert_eq!(listed["faces"][2]["face_storage_type"], "NoStorage");
    // The face added by mistake now lets Biden in as Obama; deleting it closes that door.
    let search = |image: &str| {
        s.call(
            "POST",
            "/face-search",
            Some(&json!({"collection_name": "staff", "face_base_64": photo(image)})),
        )
    };
    let (_, hits) = search("biden.jpg");
    assert_eq!(hits[0]["person_id"], "obama", "{hits}");
    let (status, deleted) = s.call("DELETE", &format!("{faces}/3"), None);
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted["num_faces"], 2);
    let (_, hits) = search("biden.jpg");
    assert_eq!(hits, json!([]));
    let (_, hits) = search("obama3.jpg");
    assert_eq!(hits[0]["person_id"], "obama", "{hits}");
    // Reads and errors.
    let (_, person) = s.call("GET", "/person/staff/obama", None);
    assert_eq!(person["num_faces"], 2);
    assert_eq!(person["face_ids"], json!([1, 2]));
    assert_error(
        s.call("DELETE", &format!("{faces}/3"), None),
        404,
        "ERR_NOT_FOUND",
    );
    assert_error(
        s.call("DELETE", &format!("{faces}/x"), None),
        404,
        "ERR_NOT_FOUND",
    );
    assert_error(
        s.call("POST", "/person/staff/nobody/faces", Some(&biden)),
        404,
        "ERR_NOT_FOUND",
    );
    assert_error(
        s.call("GET", "/person/staff/nobody/faces", None),
        404,
        "ERR_NOT_FOUND",
    );
    s.call("DELETE", &format!("{faces}/1"), None);
    assert_error(
        s.call("DELETE", &format!("{faces}/2"), None),
        422,
        "ERR_INVALID_REQUEST",
    );
    assert_eq!(face_ids(&s, "staff", "obama"), [2]);
    // PUT /person keeps its upstream meaning: the person now has exactly this one face.
    assert_eq!(
        enrol(&s, "staff", "obama", "Obama", &photo("obama3.jpg")).0,
        200
    );
    assert_eq!(face_ids(&s, "staff", "obama"), [4]);
}

#[test]
fn bulk_items_may_carry_several_faces_up_to_the_limit_and_each_item_is_all_or_nothing() {
    let (_d, s) = start();
    create_collection(&s, "staff");
    let six: Vec<String> = (0..6).map(|_| photo("obama2.jpg")).collect();
    let body = json!({
        "collection_name": "staff",
        "persons": [
            {"person_id": "obama", "face_base_64": photo("obama.jpg"),
             "faces_base_64": [photo("obama2.jpg"), photo("obama3.jpg")]},
            {"person_id": "only-list", "faces_base_64": [photo("biden.jpg")]},
            {"person_id": "bad-second", "faces_base_64": [photo("obama.jpg"), b64(&no_face_jpeg())]},
            {"person_id": "too-many", "faces_base_64": six},
            {"person_id": "none"},
            {"person_id": "two-people", "faces_base_64": [photo("obama.jpg"), photo("biden.jpg")]},
        ]
    });
    let (status, results) = s.call("PUT", "/persons", Some(&body));
    assert_eq!(status, 200, "{results}");
    let codes = item_codes(&results);
    assert_eq!(
        codes,
        [
            "OK",
            "OK",
            "ERR_FACE_NOT_DETECTED",
            "ERR_INVALID_REQUEST",
            "ERR_INVALID_REQUEST",
            "ERR_FACE_DOES_NOT_MATCH_PERSON"
        ]
    );
    assert_eq!(results[2]["metadata"]["face_index"], 1);
    assert_eq!(results[5]["metadata"]["face_index"], 1, "{}", results[5]);
    assert_eq!(results[3]["metadata"]["max_faces_per_person"], 5);
    assert_eq!(face_ids(&s, "staff", "obama"), [1, 2, 3]);
    assert_eq!(
        face_ids(&s, "staff", "only-list"),
        [4],
        "face ids are unique in the store"
    );
    assert_error(
        s.call("GET", "/person/staff/bad-second", None),
        404,
        "ERR_NOT_FOUND",
    );
    let (_, list) = s.call("GET", "/persons?collection_name=staff", None);
    assert_eq!(list["count"], 2);
}

#[test]
fn access_rules_are_validated_stored_shown_and_kept_when_a_new_photo_comes_without_them() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(
        &dir.path().join("data"),
        &Options {
            config: "[access.schedules.office]\ntime_zone = \"Europe/Berlin\"\n\
                     mon-fri = \"07:00-19:00\"\n"
                .into(),
            ..Options::default()
        },
    )
    .unwrap();
    create_collection(&s, "staff");
    let put = |access: Value| {
        s.call(
            "PUT",
            "/person",
            Some(&json!({
                "person_id": "obama",
                "collection_name": "staff",
                "face_base_64": photo("obama.jpg"),
                "access": access,
            })),
        )
    };
    let rules = json!({
        "valid_from": "2026-12-01T08:00:00+01:00",
        "valid_until": "2027-12-01T00:00:00Z",
        "doors": ["main", "garage"],
        "schedule": "office",
        "blocked": true,
    });
    let (status, body) = put(rules.clone());
    assert_eq!(status, 200, "{body}");
    let shown = json!({
        "valid_from": "2026-12-01T07:00:00Z",
        "valid_until": "2027-12-01T00:00:00Z",
        "doors": ["main", "garage"],
        "schedule": "office",
        "blocked": true,
    });
    assert_eq!(body["access"], shown);
    let read = || s.call("GET", "/person/staff/obama", None).1["access"].clone();
    assert_eq!(read(), shown);
    // A new photo without rules keeps them: re-enrolling must never lift a block.
    let (status, _) = enrol(&s, "staff", "obama", "Barack Obama", &photo("obama2.jpg"));
    assert_eq!(status, 200);
    assert_eq!(read(), shown);
    // Rules that cannot be applied are refused, naming the field, and change nothing.
    for (bad, field) in [
        (json!({"schedule": "night"}), "access.schedule"),
        (json!({"valid_from": "next week"}), "access.valid_from"),
        (
            json!({"valid_from": "2027-01-01T00:00:00Z", "valid_until": "2026-01-01T00:00:00Z"}),
            "access.valid_until",
        ),
        (json!({"doors": ["main/#"]}), "access.doors"),
    ] {
        let e = assert_error(put(bad.clone()), 422, "ERR_INVALID_REQUEST");
        assert_eq!(e["metadata"]["field"], field, "{bad}: {e}");
    }
    let e = assert_error(put(json!({"door": ["main"]})), 422, "ERR_INVALID_REQUEST");
    assert!(e["message"].as_str().unwrap().contains("door"), "{e}");
    assert_eq!(read(), shown, "a refused request changed nothing");
    // A bulk item is checked the same way, on its own.
    let (status, body) = s.call(
        "PUT",
        "/persons",
        Some(&json!({
            "collection_name": "staff",
            "persons": [
                {"person_id": "biden", "face_base_64": photo("biden.jpg"),
                 "access": {"schedule": "night"}},
                {"person_id": "obama", "face_base_64": photo("obama.jpg"),
                 "access": {"doors": []}},
            ],
        })),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(item_codes(&body), ["ERR_INVALID_REQUEST", "OK"]);
    assert_eq!(read(), json!({"doors": []}));
    // `{}` clears the rules.
    let (status, _) = put(json!({}));
    assert_eq!(status, 200);
    assert_eq!(read(), json!({}));
    // The key that signs access messages is in /health.
    let h = s.call("GET", "/health", None).1;
    let key = h["access"]["public_key"].as_str().unwrap();
    assert_eq!(key.len(), 44, "{h}");
    assert_eq!(h["access"]["schedules"], json!(["office"]));
}
