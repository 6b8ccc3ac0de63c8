//! Still-image liveness: each upstream code produced by a photo made for it, and a good
//! frontal photo passing every check (real models, fixture photos).

mod common;

use common::fixture;
use facegate_core::config::{Config, EmbedderKind, LivenessConfig};
use facegate_core::engine::liveness::{check_still, Verdict};
use facegate_core::engine::Engine;
use image::{imageops, Rgb, RgbImage};

fn engine() -> Engine {
    common::engine(EmbedderKind::Dlib128)
}

fn photo(name: &str) -> RgbImage {
    let bytes = std::fs::read(fixture(name)).unwrap();
    engine().decode(&bytes).unwrap()
}

fn verdict(engine: &mut Engine, frame: &RgbImage, limits: &LivenessConfig) -> Verdict {
    let faces = engine.locate(frame).unwrap();
    engine.liveness(frame, &faces, limits).unwrap()
}

fn code_of(frame: &RgbImage) -> (&'static str, Verdict) {
    let v = verdict(&mut engine(), frame, &LivenessConfig::default());
    (v.code.as_str(), v)
}

fn check<'a>(v: &'a Verdict, name: &str) -> &'a facegate_core::engine::liveness::Check {
    v.checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no {name} check in {v:?}"))
}

#[test]
fn a_good_frontal_photo_passes_every_check() {
    for name in ["obama.jpg", "biden.jpg", "32bit.png"] {
        let (code, v) = code_of(&photo(name));
        assert_eq!(code, "OK", "{name}: {v:?}");
        assert!(v.is_live);
        assert!(v.checks.iter().all(|c| c.result == "passed"), "{v:?}");
        assert!(v.liveness_score >= 0.9, "{name}: {v:?}");
    }
}

#[test]
fn no_face_is_face_not_found() {
    let blank = RgbImage::from_fn(640, 480, |x, y| Rgb([(x / 3) as u8, (y / 2) as u8, 90]));
    assert_eq!(code_of(&blank).0, "FACE_NOT_FOUND");
}

#[test]
fn a_second_face_of_similar_size_is_too_many_faces() {
    let (a, b) = (photo("obama.jpg"), photo("biden.jpg"));
    let h = a.height().max(b.height());
    let mut canvas = RgbImage::from_pixel(a.width() + b.width() + 60, h + 40, Rgb([128, 128, 128]));
    imageops::overlay(&mut canvas, &a, 20, 20);
    imageops::overlay(&mut canvas, &b, a.width() as i64 + 40, 20);
    let (code, v) = code_of(&canvas);
    assert_eq!(code, "TOO_MANY_FACES", "{v:?}");
}

#[test]
fn a_shrunk_photo_is_face_too_small() {
    let img = photo("obama.jpg");
    let small = imageops::resize(
        &img,
        img.width() / 2,
        img.height() / 2,
        imageops::FilterType::Triangle,
    );
    let (code, v) = code_of(&small);
    assert_eq!(code, "FACE_TOO_SMALL", "{v:?}");
    assert!(check(&v, "face_size_px").value.unwrap() < 150.0);
}

#[test]
fn a_photo_cut_through_the_face_is_face_cropped() {
    // The fixture cuts off the left half of the face.
    let (code, v) = code_of(&photo("obama_partial_face2.jpg"));
    assert_eq!(code, "FACE_CROPPED", "{v:?}");
}

#[test]
fn a_face_at_the_edge_is_face_close_to_border() {
    let img = photo("obama.jpg");
    // The face box starts at x ≈ 358: start the image 5 px before it.
    let cut = imageops::crop_imm(&img, 353, 0, img.width() - 353, img.height()).to_image();
    let (code, v) = code_of(&cut);
    assert_eq!(code, "FACE_CLOSE_TO_BORDER", "{v:?}");
}

#[test]
fn a_face_filling_the_picture_is_face_too_close() {
    let img = photo("obama.jpg");
    let tight = imageops::crop_imm(&img, 340, 120, 320, 320).to_image();
    let (code, v) = code_of(&tight);
    assert_eq!(code, "FACE_TOO_CLOSE", "{v:?}");
}

#[test]
fn a_turned_head_is_face_angle_too_large() {
    // sample2.jpg holds a face in half profile: crop each large face on its own.
    let img = photo("sample2.jpg");
    let mut engine = engine();
    let faces = engine.locate(&img).unwrap();
    let mut codes = Vec::new();
    for (det, _) in faces.iter().filter(|(d, _)| d.bbox.width() >= 150.0) {
        let c = det.bbox.center();
        let half = det.bbox.width().max(det.bbox.height()) * 1.15;
        let (x0, y0) = ((c.x - half).max(0.0) as u32, (c.y - half).max(0.0) as u32);
        let (x1, y1) = (
            ((c.x + half) as u32).min(img.width()),
            ((c.y + half) as u32).min(img.height()),
        );
        let crop = imageops::crop_imm(&img, x0, y0, x1 - x0, y1 - y0).to_image();
        let v = verdict(&mut engine, &crop, &LivenessConfig::default());
        if v.code == "FACE_ANGLE_TOO_LARGE" {
            assert!(check(&v, "yaw_deg").value.unwrap().abs() > 30.0, "{v:?}");
        }
        codes.push(v.code.as_str());
    }
    assert!(codes.contains(&"FACE_ANGLE_TOO_LARGE"), "{codes:?}");
    assert!(codes.contains(&"OK"), "the frontal faces pass: {codes:?}");
}

#[test]
fn a_covered_nose_and_mouth_is_face_is_occluded() {
    let mut img = photo("obama.jpg");
    for y in 260..430 {
        for x in 340..650 {
            img.put_pixel(x, y, Rgb([30, 60, 140]));
        }
    }
    let (code, v) = code_of(&img);
    assert_eq!(code, "FACE_IS_OCCLUDED", "{v:?}");
}

#[test]
fn eyes_painted_shut_are_eyes_closed() {
    // Each eye covered with cheek-coloured skin and a lash line: lids without an iris.
    let mut img = photo("obama.jpg");
    for (ex, ey) in [(439i32, 217i32), (546, 215)] {
        let skin = *img.get_pixel(ex as u32, (ey + 28) as u32);
        for y in -11..=11 {
            for x in -26..=26 {
                if (x * x) as f32 / 676.0 + (y * y) as f32 / 121.0 <= 1.0 {
                    img.put_pixel((ex + x) as u32, (ey + y) as u32, skin);
                }
            }
        }
        for x in -22..=22i32 {
            let y = ey + 2 + (x * x) / 120;
            for t in 0..3 {
                img.put_pixel((ex + x) as u32, (y + t) as u32, Rgb([40, 28, 25]));
            }
        }
    }
    let (code, v) = code_of(&img);
    assert_eq!(code, "EYES_CLOSED", "{v:?}");
    assert!(check(&v, "eye_darkness").value.unwrap() < 0.15, "{v:?}");
}

#[test]
fn closed_lids_in_the_landmarks_are_eyes_closed() {
    // The landmark side of the check: upper-lid points moved onto the lower lid.
    let img = photo("obama.jpg");
    let mut engine = engine();
    let mut faces = engine.locate(&img).unwrap();
    let lm = &mut faces[0].1;
    for (upper, lower) in [(160, 144), (158, 153), (387, 373), (385, 380)] {
        lm.points[upper] = lm.points[lower];
    }
    let v = check_still(&img, &faces, &LivenessConfig::default(), &mut |_| Some(1.0));
    assert_eq!(v.code, "EYES_CLOSED", "{v:?}");
    assert!(!v.is_live);
}

#[test]
fn a_low_pad_score_is_face_not_live_and_pad_is_never_skipped_silently() {
    let img = photo("obama3.jpg");
    let strict = LivenessConfig {
        pad_threshold: 0.99,
        ..LivenessConfig::default()
    };
    let v = verdict(&mut engine(), &img, &strict);
    assert_eq!(v.code, "FACE_NOT_LIVE", "{v:?}");
    assert!(v.liveness_score < 0.99);
    // Without a PAD model nothing is live: the verdict says the check did not run.
    let mut config = Config::default();
    config.inference.embedder = EmbedderKind::Dlib128;
    config.liveness.pad_enabled = false;
    let mut no_pad = Engine::open(&config).unwrap();
    let v = verdict(&mut no_pad, &photo("obama.jpg"), &config.liveness);
    assert!(!v.is_live);
    assert_eq!(v.code, "UNKNOWN_ERROR");
    assert_eq!(check(&v, "pad").result, "not_run");
}

#[test]
fn on_a_slice_of_the_synthetic_presentations_no_attack_is_live_and_no_bona_fide_a_spoof() {
    use facegate_core::pipeline::track_liveness::TrackLimits;
    use facegate_tools::eval_liveness::evaluate;
    let mut config = Config::default();
    config.inference.embedder = EmbedderKind::Dlib128;
    config.detector.min_face_px = 60.0;
    let mut engine = Engine::open(&config).unwrap();
    let photos: Vec<RgbImage> = ["obama.jpg", "biden.jpg", "32bit.png", "obama2.jpg"]
        .iter()
        .map(|n| photo(n))
        .collect();
    let report = evaluate(
        &mut engine,
        &photos,
        12,
        24,
        8,
        &TrackLimits::default(),
        &|_, _| {},
    )
    .unwrap();
    assert_eq!(report.attacks.sequences, 12);
    assert_eq!(report.bona_fide.sequences, 24);
    assert_eq!(report.attacks.live, 0, "{report:?}");
    assert_eq!(report.bona_fide.spoof, 0, "{report:?}");
    // Head motion of up to ±20° is mostly large enough to judge.
    assert!(report.bona_fide.live >= 6, "{report:?}");
    assert!(
        report.landmark_noise > 0.0 && report.landmark_noise < 0.05,
        "{report:?}"
    );
}
