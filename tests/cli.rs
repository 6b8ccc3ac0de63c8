//! The command line as a user meets it: JSON out, clear errors and no panics on bad input.

mod common;

use std::path::Path;
use std::process::Output;

use common::fixture;

fn facegate(args: &[&str]) -> Output {
    common::facegate_command()
        .args(args)
        .env_remove("ORT_DYLIB_PATH")
        .current_dir(std::env::temp_dir()) // works from any directory
        .output()
        .expect("the binary runs")
}

/// `facegate --config CFG detect obama.jpg`: one face, when the configuration works.
fn detect_with_config(cfg: &str) -> Output {
    facegate(&[
        "--config",
        cfg,
        "detect",
        fixture("obama.jpg").to_str().unwrap(),
    ])
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_clean_error(o: &Output, expect: &str) {
    assert_eq!(
        o.status.code(),
        Some(1),
        "exit status; stderr: {}",
        stderr(o)
    );
    let err = stderr(o);
    assert!(err.contains(expect), "stderr lacks {expect:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(o.stdout.is_empty(), "nothing on stdout for an error");
}

#[test]
fn detect_prints_boxes_landmarks_and_scores_as_json() {
    let o = facegate(&["detect", fixture("obama.jpg").to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let faces = v.as_array().unwrap();
    assert_eq!(faces.len(), 1);
    let f = &faces[0];
    for k in ["left", "top", "right", "bottom"] {
        assert!(f["box"][k].is_i64(), "box.{k}");
    }
    for k in ["left_eye", "right_eye", "nose", "left_mouth", "right_mouth"] {
        assert!(f["landmarks"][k]["x"].is_f64(), "landmarks.{k}");
    }
    assert!(f["landmarks"]["left_eye"]["x"].as_f64() < f["landmarks"]["right_eye"]["x"].as_f64());
    assert!(f["detection_score"].as_f64().unwrap() > 0.5);
}

#[test]
fn compare_reports_a_match_for_the_same_person_and_none_for_another() {
    let same = facegate(&[
        "compare",
        fixture("obama.jpg").to_str().unwrap(),
        fixture("obama2.jpg").to_str().unwrap(),
    ]);
    assert!(same.status.success(), "{}", stderr(&same));
    let v: serde_json::Value = serde_json::from_slice(&same.stdout).unwrap();
    assert_eq!(v["is_match"], true);
    assert!(v["cosine"].is_f64());
    let other = facegate(&[
        "--embedder",
        "dlib128",
        "compare",
        fixture("obama.jpg").to_str().unwrap(),
        fixture("biden.jpg").to_str().unwrap(),
        "--min-similarity",
        "0.5",
    ]);
    assert!(other.status.success(), "{}", stderr(&other));
    let v: serde_json::Value = serde_json::from_slice(&other.stdout).unwrap();
    assert_eq!(v["is_match"], false);
    assert!(v["distance"].as_f64().unwrap() > 0.6);
}

#[test]
fn embed_prints_one_template_per_face() {
    let o = facegate(&[
        "--embedder",
        "dlib128",
        "embed",
        fixture("t1.jpg").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let faces = v.as_array().unwrap();
    assert_eq!(faces.len(), 6);
    assert!(faces
        .iter()
        .all(|f| f["embedding"].as_array().unwrap().len() == 128));
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.to_str().unwrap().to_owned()
}

#[test]
fn bad_images_get_clear_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let text = write(dir.path(), "notes.jpg", b"this is not an image");
    assert_clean_error(&facegate(&["detect", &text]), "not an image");

    let jpeg = std::fs::read(fixture("obama.jpg")).unwrap();
    let truncated = write(dir.path(), "truncated.jpg", &jpeg[..jpeg.len() / 3]);
    let o = facegate(&["detect", &truncated]);
    // A truncated JPEG either decodes partially (the image crate fills the rest) or fails
    // cleanly; it must never crash.
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    assert!(o.status.code() == Some(0) || o.status.code() == Some(1));
    let cut_header = write(dir.path(), "header.jpg", &jpeg[..200]);
    assert_clean_error(&facegate(&["detect", &cut_header]), "could not be decoded");

    let mut one = Vec::new();
    image::DynamicImage::ImageRgb8(image::RgbImage::new(1, 1))
        .write_to(&mut std::io::Cursor::new(&mut one), image::ImageFormat::Png)
        .unwrap();
    let one = write(dir.path(), "one.png", &one);
    assert_clean_error(&facegate(&["detect", &one]), "1×1");

    let huge = write(
        dir.path(),
        "huge.png",
        &common::png_claiming(100_000, 100_000),
    );
    assert_clean_error(&facegate(&["detect", &huge]), "100000×100000");

    let missing = dir.path().join("nope.jpg");
    assert_clean_error(
        &facegate(&["detect", missing.to_str().unwrap()]),
        "cannot read",
    );
}

#[test]
fn compare_names_the_image_without_a_face() {
    let dir = tempfile::tempdir().unwrap();
    let mut blank = Vec::new();
    image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(
        320,
        240,
        image::Rgb([200, 180, 160]),
    ))
    .write_to(
        &mut std::io::Cursor::new(&mut blank),
        image::ImageFormat::Png,
    )
    .unwrap();
    let blank = write(dir.path(), "wall.png", &blank);
    let o = facegate(&["compare", fixture("obama.jpg").to_str().unwrap(), &blank]);
    assert_clean_error(&o, "no face found in");
    assert!(stderr(&o).contains("wall.png"));
}

#[test]
fn a_missing_model_folder_is_a_startup_error_that_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "facegate.toml",
        format!("[inference]\nmodel_dir = \"{}\"\n", dir.path().display()).as_bytes(),
    );
    let o = detect_with_config(&cfg);
    assert_clean_error(&o, "make models");
}

#[test]
fn a_wrong_onnx_runtime_library_is_a_startup_error_that_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let fake = write(dir.path(), "libonnxruntime.so", b"not a shared library");
    let cfg = write(
        dir.path(),
        "facegate.toml",
        format!("[inference]\nort_library = \"{fake}\"\n").as_bytes(),
    );
    let o = detect_with_config(&cfg);
    assert_clean_error(&o, "could not be loaded");
}

#[test]
fn print_config_prints_defaults_that_load_back() {
    let o = facegate(&["print-config"]);
    assert!(o.status.success());
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.contains("embedder = \"arcface512\""));
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "defaults.toml", text.as_bytes());
    let o = facegate(&["--config", &cfg, "print-config"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn an_unknown_config_key_is_refused_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "bad.toml", b"[detector]\nthreshold = 0.3\n");
    assert_clean_error(&facegate(&["--config", &cfg, "print-config"]), "threshold");
}

/// What stands in for one model file in a test's model folder.
enum Replacement<'a> {
    /// A link to another of the real models.
    OtherModel(&'a str),
    /// A file with these bytes.
    Bytes(&'a [u8]),
}

/// A model folder holding links to the real models, with `file` replaced; returns the path of
/// a config file that points at it.
fn model_dir_with(dir: &Path, file: &str, replacement: Replacement) -> String {
    let real = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let models = dir.join("models");
    std::fs::create_dir_all(&models).unwrap();
    for entry in std::fs::read_dir(&real).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name().to_str() != Some(file) {
            std::os::unix::fs::symlink(entry.path(), models.join(entry.file_name())).unwrap();
        }
    }
    match replacement {
        Replacement::OtherModel(other) => {
            std::os::unix::fs::symlink(real.join(other), models.join(file)).unwrap()
        }
        Replacement::Bytes(b) => std::fs::write(models.join(file), b).unwrap(),
    }
    let config = format!("[inference]\nmodel_dir = \"{}\"\n", models.display());
    write(dir, "facegate.toml", config.as_bytes())
}

#[test]
fn a_model_with_the_wrong_input_shape_is_a_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = model_dir_with(
        dir.path(),
        // The embedder the default configuration loads (int8 for arcface512).
        "arcface512_int8.onnx",
        Replacement::OtherModel("pad.onnx"),
    );
    let o = detect_with_config(&cfg);
    assert_clean_error(&o, "does not have the expected shape");
    assert!(
        stderr(&o).contains("arcface512_int8.onnx"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_corrupt_model_file_is_a_startup_error_that_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = model_dir_with(
        dir.path(),
        "facemesh.onnx",
        Replacement::Bytes(b"garbage, not protobuf"),
    );
    let o = detect_with_config(&cfg);
    assert_clean_error(&o, "could not be opened");
    assert!(stderr(&o).contains("facemesh.onnx"), "{}", stderr(&o));
}

#[test]
fn an_execution_provider_that_is_not_available_falls_back_to_the_cpu_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "facegate.toml",
        b"[inference]\nexecution_providers = [\"tensorrt\", \"cpu\"]\n",
    );
    let o = detect_with_config(&cfg);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("tensorrt"),
        "the fallback is reported: {}",
        stderr(&o)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
}

#[test]
fn benches_and_enroll_refuse_empty_input_with_a_clear_error() {
    let o = facegate(&["bench", "search", "--templates", "0"]);
    assert_clean_error(&o, "at least 1");
    let o = facegate(&["bench", "search", "--dim", "0"]);
    assert_clean_error(&o, "at least 1");
    let empty = tempfile::tempdir().unwrap();
    let dir = empty.path().to_str().unwrap();
    let o = facegate(&["enroll", "--collection", "staff", "--api-key", "k", dir]);
    assert_clean_error(&o, "no JPEG, PNG or WebP photo");
}

#[test]
fn doctor_checks_models_against_the_lock_and_names_an_unreachable_broker_as_a_fix() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, format!("[mqtt]\nenabled = true\nport = {port}\n")).unwrap();
    let out = facegate(&[
        "--config",
        cfg.to_str().unwrap(),
        "doctor",
        "--data-dir",
        dir.path().join("data").to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("OK   model arcface512.onnx: sha256 matches models.lock"),
        "{text}"
    );
    assert!(text.contains("CPUExecutionProvider"), "{text}");
    assert!(
        text.contains(&format!("FIX  broker 127.0.0.1:{port} unreachable")),
        "{text}"
    );
    assert!(
        text.contains("store") && text.contains("not created yet"),
        "{text}"
    );
}
