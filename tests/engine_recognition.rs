//! Recognition on real photos: alignment and both embedders with the real models.

mod common;

use common::{engine, fixture_bytes};
use facegate_core::config::EmbedderKind;
use facegate_core::engine::{most_central, Engine};

const OBAMA: [&str; 5] = [
    "obama.jpg",
    "obama2.jpg",
    "obama3.jpg",
    "obama_partial_face.jpg",
    "obama_partial_face2.jpg",
];

fn template(e: &mut Engine, name: &str) -> Vec<f32> {
    let frame = e.decode(&fixture_bytes(name)).unwrap();
    let faces = e.analyse(&frame).unwrap();
    most_central(&faces, frame.width(), frame.height())
        .and_then(|f| f.embedding.clone())
        .unwrap_or_else(|| panic!("no template for {name}"))
}

fn separates_same_from_different_people(kind: EmbedderKind) {
    let mut e = engine(kind);
    let obama: Vec<_> = OBAMA.iter().map(|n| template(&mut e, n)).collect();
    let biden = template(&mut e, "biden.jpg");
    let mut same_min = f32::MAX;
    for i in 0..obama.len() {
        for j in i + 1..obama.len() {
            same_min = same_min.min(e.similarity(&obama[i], &obama[j]));
        }
    }
    let diff_max = obama
        .iter()
        .map(|o| e.similarity(o, &biden))
        .fold(f32::MIN, f32::max);
    // The default threshold 0.7 (false-match rate 1e-5) must accept every pair of the same
    // man, partial faces included, and a comfortable margin must remain to another man.
    assert!(
        same_min >= 0.7,
        "{kind:?}: weakest same-person score {same_min}"
    );
    assert!(
        diff_max < 0.5,
        "{kind:?}: strongest different-person score {diff_max}"
    );
}

#[test]
fn arcface512_scores_the_same_person_above_and_different_people_below_the_default() {
    separates_same_from_different_people(EmbedderKind::Arcface512);
}

#[test]
fn dlib128_scores_the_same_person_above_and_different_people_below_the_default() {
    separates_same_from_different_people(EmbedderKind::Dlib128);
}

#[test]
fn the_six_people_of_the_group_photo_do_not_match_each_other() {
    for kind in [EmbedderKind::Arcface512, EmbedderKind::Dlib128] {
        let mut e = engine(kind);
        let frame = e.decode(&fixture_bytes("t1.jpg")).unwrap();
        let faces = e.analyse(&frame).unwrap();
        assert_eq!(faces.len(), 6);
        for i in 0..6 {
            for j in i + 1..6 {
                let s = e.similarity(
                    faces[i].embedding.as_ref().unwrap(),
                    faces[j].embedding.as_ref().unwrap(),
                );
                assert!(s < 0.7, "{kind:?}: faces {i} and {j} score {s}");
            }
        }
    }
}

#[test]
fn a_batch_of_faces_gives_the_same_templates_as_one_face_at_a_time() {
    for kind in [EmbedderKind::Arcface512, EmbedderKind::Dlib128] {
        let mut e = engine(kind);
        let frame = e.decode(&fixture_bytes("t1.jpg")).unwrap();
        let faces = e.analyse(&frame).unwrap();
        for f in &faces {
            let alone = e.embed(&frame, &[&f.landmarks]).unwrap().remove(0).unwrap();
            let batched = f.embedding.as_ref().unwrap();
            let max_diff = alone
                .iter()
                .zip(batched)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(
                max_diff < 1e-4,
                "{kind:?}: batch changes a template by {max_diff}"
            );
        }
    }
}

#[test]
fn templates_have_the_embedders_dimension_and_arcface_ones_unit_length() {
    let mut e = engine(EmbedderKind::Arcface512);
    let t = template(&mut e, "obama.jpg");
    assert_eq!(t.len(), 512);
    let norm: f32 = t.iter().map(|v| v * v).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4);
    let mut d = engine(EmbedderKind::Dlib128);
    assert_eq!(template(&mut d, "obama.jpg").len(), 128);
}

#[test]
fn facemesh_landmarks_sit_inside_the_detected_face() {
    let mut e = engine(EmbedderKind::Dlib128);
    let frame = e.decode(&fixture_bytes("t1.jpg")).unwrap();
    for f in e.analyse(&frame).unwrap() {
        let b = f.bbox();
        let margin = 0.25 * b.width();
        for p in [
            f.landmarks.right_eye_center(),
            f.landmarks.left_eye_center(),
        ] {
            assert!(
                p.x > b.left - margin
                    && p.x < b.right + margin
                    && p.y > b.top - margin
                    && p.y < b.bottom
            );
        }
        assert!(
            f.landmarks.presence > 0.5,
            "presence {}",
            f.landmarks.presence
        );
    }
}

#[test]
fn mirrored_averaging_makes_a_face_and_its_mirror_image_give_the_same_template() {
    let cosine = |mirror: bool| {
        let mut config = facegate_core::config::Config::default();
        config.inference.threads = 1;
        config.inference.mirror_average = mirror;
        let mut e = Engine::open(&config).unwrap();
        let frame = e.decode(&fixture_bytes("obama.jpg")).unwrap();
        let flipped = image::imageops::flip_horizontal(&frame);
        let a = e.analyse(&frame).unwrap().remove(0).embedding.unwrap();
        let b = e.analyse(&flipped).unwrap().remove(0).embedding.unwrap();
        e.compare(&a, &b)
    };
    let (with, without) = (cosine(true), cosine(false));
    assert!(with > 0.98, "with mirrored averaging: cosine {with}");
    assert!(
        with > without,
        "averaging must bring the mirror closer ({with} vs {without})"
    );
}
