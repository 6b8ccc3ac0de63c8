//! The LMDB store on a real disk: durability across reopen, atomic collection deletion, map
//! growth, and refusal of a store made by another embedding model.

use std::collections::BTreeMap;
use std::sync::Arc;

use facegate_core::clock::SystemClock;
use facegate_core::engine::embedder::{l2_normalise, Metric};
use facegate_core::store::{
    Enrolment, FaceRefused, FaceStorage, Images, ModelId, NewFace, Page, Store, StoreError,
    StoreOptions,
};

fn model() -> ModelId {
    ModelId {
        id: "test512@0000".into(),
        dim: 512,
        metric: Metric::Cosine,
    }
}

fn open(dir: &std::path::Path, options: &StoreOptions) -> Result<Store, StoreError> {
    Store::open(dir, model(), options, Arc::new(SystemClock))
}

fn template(seed: u32) -> Vec<f32> {
    let mut v: Vec<f32> = (0..512)
        .map(|i| (i as f32 * 0.37 + seed as f32 * 1.71).sin())
        .collect();
    l2_normalise(&mut v);
    v
}

fn person(id: &str, seed: u32, image: Option<Vec<u8>>) -> Enrolment {
    Enrolment::one_face(
        id.into(),
        format!("Name of {id}"),
        BTreeMap::from([("team".to_string(), "blue".to_string())]),
        template(seed),
        image.clone(),
        if image.is_some() {
            FaceStorage::StoreThumbnails
        } else {
            FaceStorage::NoStorage
        },
    )
}

#[test]
fn enrolled_persons_are_found_after_the_store_is_reopened() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path(), &StoreOptions::default()).unwrap();
        store.create_collection("staff").unwrap();
        let items = (0..20).map(|i| person(&format!("p{i}"), i, None)).collect();
        let out = store.enrol("staff", items, None).unwrap();
        assert!(out.iter().all(|r| r.is_ok()));
    }
    let store = open(dir.path(), &StoreOptions::default()).unwrap();
    assert_eq!(store.collection("staff").unwrap().num_persons, 20);
    let (hits, stats) = store
        .search("staff", &template(7), 3, 0.0, Images::ALL)
        .unwrap();
    assert_eq!(hits[0].person.person_id, "p7");
    assert!((hits[0].closeness - 1.0).abs() < 1e-5);
    assert_eq!(stats.scanned, 20);
    assert!(store.verify().unwrap().is_empty());
}

#[test]
fn deleting_a_collection_removes_everything_in_it_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &StoreOptions::default()).unwrap();
    for c in ["staff", "staff2"] {
        store.create_collection(c).unwrap();
        let items = (0..5)
            .map(|i| person(&format!("p{i}"), i, Some(vec![1, 2, 3])))
            .collect();
        store.enrol(c, items, None).unwrap();
    }
    assert_eq!(store.delete_collection("staff").unwrap(), 5);
    assert!(matches!(
        store.collection("staff"),
        Err(StoreError::CollectionNotFound)
    ));
    assert!(matches!(
        store.person("staff", "p1"),
        Err(StoreError::CollectionNotFound)
    ));
    let keys = store.template_keys().unwrap();
    assert_eq!(keys.len(), 5);
    assert!(keys.iter().all(|(c, _)| c == "staff2"));
    let (p, image) = store.person("staff2", "p1").unwrap();
    assert_eq!(p.person_name, "Name of p1");
    assert_eq!(image, Some(vec![1, 2, 3]));
    assert!(store.verify().unwrap().is_empty());
}

#[test]
fn a_full_map_grows_instead_of_failing_a_write() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        map_size: 1 << 20,
        release_pages_after_load: false,
        ..StoreOptions::default()
    };
    let store = open(dir.path(), &options).unwrap();
    store.create_collection("big").unwrap();
    // 2,000 templates of 2 KiB with 4 KiB images: far beyond a 1 MiB map.
    for batch in 0..10 {
        let items = (0..200)
            .map(|i| {
                let n = batch * 200 + i;
                person(&format!("p{n}"), n, Some(vec![7u8; 4096]))
            })
            .collect();
        assert!(store
            .enrol("big", items, None)
            .unwrap()
            .iter()
            .all(|r| r.is_ok()));
    }
    assert_eq!(store.collection("big").unwrap().num_persons, 2000);
    drop(store);
    let store = open(dir.path(), &options).unwrap();
    assert_eq!(store.counts(), (1, 2000));
}

#[test]
fn the_map_stops_growing_at_its_ceiling_and_a_write_past_it_fails_without_a_trace() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        map_size: 1 << 20,
        max_map_size: 4 << 20,
        release_pages_after_load: false,
        ..StoreOptions::default()
    };
    let store = open(dir.path(), &options).unwrap();
    store.create_collection("big").unwrap();
    let mut stored = 0;
    let err = loop {
        let items = (0..50)
            .map(|i| {
                person(
                    &format!("p{stored}-{i}"),
                    stored + i,
                    Some(vec![7u8; 16 << 10]),
                )
            })
            .collect();
        match store.enrol("big", items, None) {
            Ok(r) => {
                assert!(r.iter().all(|r| r.is_ok()));
                stored += 50;
            }
            Err(e) => break e,
        }
        assert!(stored < 10_000, "the map never filled");
    };
    assert!(matches!(err, StoreError::Full { limit_mib: 4 }), "{err}");
    assert!(
        std::fs::metadata(dir.path().join("data.mdb"))
            .unwrap()
            .len()
            <= 4 << 20
    );
    // The failed batch left nothing behind, and the store still answers.
    assert_eq!(store.collection("big").unwrap().num_persons, stored as u64);
    drop(store);
    assert_eq!(
        open(dir.path(), &options).unwrap().counts(),
        (1, stored as usize)
    );
}

#[test]
fn a_store_made_by_another_embedding_model_is_refused_with_how_to_re_enrol() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path(), &StoreOptions::default()).unwrap());
    let other = ModelId {
        id: "dlib128@1111".into(),
        dim: 128,
        metric: Metric::Euclidean,
    };
    let err = Store::open(
        dir.path(),
        other,
        &StoreOptions::default(),
        Arc::new(SystemClock),
    )
    .err()
    .expect("must refuse");
    let text = err.to_string();
    assert!(
        text.contains("test512@0000") && text.contains("dlib128@1111"),
        "{text}"
    );
    assert!(text.contains("re-enrol"), "{text}");
}

#[test]
fn upsert_replaces_a_person_and_keeps_the_creation_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &StoreOptions::default()).unwrap();
    store.create_collection("c").unwrap();
    let first = store.enrol("c", vec![person("a", 1, None)], None).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(5));
    let mut again = person("a", 2, None);
    again.person_name = "Renamed".into();
    let second = store.enrol("c", vec![again], None).unwrap();
    let (first, second) = (first[0].as_ref().unwrap(), second[0].as_ref().unwrap());
    assert_eq!(first.created_at_ms, second.created_at_ms);
    assert!(second.updated_at_ms > first.updated_at_ms);
    assert_eq!(store.collection("c").unwrap().num_persons, 1);
    let (hits, _) = store
        .search("c", &template(2), 1, 0.99, Images::ALL)
        .unwrap();
    assert_eq!(hits[0].person.person_name, "Renamed");
    let (hits, _) = store
        .search("c", &template(1), 1, 0.99, Images::ALL)
        .unwrap();
    assert!(hits.is_empty(), "the old template is gone");
}

#[test]
fn duplicate_check_names_the_other_person_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &StoreOptions::default()).unwrap();
    store.create_collection("c").unwrap();
    store
        .enrol("c", vec![person("a", 1, None)], Some(0.5))
        .unwrap();
    let out = store
        .enrol("c", vec![person("b", 1, None)], Some(0.5))
        .unwrap();
    assert_eq!(out[0], Err("a".to_string()));
    // The same person re-enrolling is not a duplicate of itself.
    let out = store
        .enrol("c", vec![person("a", 1, None)], Some(0.5))
        .unwrap();
    assert!(out[0].is_ok());
    assert_eq!(store.collection("c").unwrap().num_persons, 1);
}

#[test]
fn listings_page_search_and_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &StoreOptions::default()).unwrap();
    store.create_collection("c").unwrap();
    let items = (0..30)
        .map(|i| person(&format!("p{i:02}"), i, None))
        .collect();
    store.enrol("c", items, None).unwrap();
    let page = Page {
        skip: 5,
        take: 10,
        search: String::new(),
        descending: true,
    };
    let (count, persons) = store.list_persons("c", &page, Images::ALL).unwrap();
    assert_eq!(count, 30);
    let ids: Vec<_> = persons.iter().map(|(p, _)| p.person_id.as_str()).collect();
    assert_eq!(ids.first(), Some(&"p24"));
    assert_eq!(ids.len(), 10);
    let page = Page {
        skip: 0,
        take: 100,
        search: "P1".into(),
        descending: false,
    };
    let (count, _) = store.list_persons("c", &page, Images::ALL).unwrap();
    assert_eq!(count, 10);
    store.delete_person("c", "p10").unwrap();
    assert!(matches!(
        store.delete_person("c", "p10"),
        Err(StoreError::PersonNotFound)
    ));
    assert_eq!(store.collection("c").unwrap().num_persons, 29);
}

/// A person with one face per seed (thumbnails `[seed]`).
fn person_with_faces(id: &str, seeds: &[u32]) -> Enrolment {
    Enrolment {
        person_id: id.into(),
        person_name: format!("Name of {id}"),
        metadata: BTreeMap::new(),
        access: None,
        faces: seeds
            .iter()
            .map(|&s| NewFace {
                template: template(s),
                image: Some(vec![s as u8]),
                storage: FaceStorage::StoreThumbnails,
            })
            .collect(),
    }
}

fn new_face(seed: u32) -> NewFace {
    NewFace {
        template: template(seed),
        image: Some(vec![seed as u8]),
        storage: FaceStorage::StoreThumbnails,
    }
}

#[test]
fn a_person_is_found_by_the_best_of_their_faces_and_appears_once_in_the_results() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &StoreOptions::default()).unwrap();
    store.create_collection("c").unwrap();
    store
        .enrol(
            "c",
            vec![
                person_with_faces("a", &[1, 2, 3]),
                person_with_faces("b", &[10]),
            ],
            None,
        )
        .unwrap();
    let (hits, stats) = store
        .search("c", &template(2), 5, -1.0, Images::ALL)
        .unwrap();
    assert_eq!(stats.scanned, 4, "one template per face");
    let ids: Vec<&str> = hits.iter().map(|m| m.person.person_id.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(hits[0].face_id, 2, "the face that matched");
    assert!((hits[0].closeness - 1.0).abs() < 1e-5);
    assert_eq!(hits[0].image, Some(vec![2]), "the matched face's thumbnail");
    assert_eq!(hits[0].person.num_faces, 3);
    let (_, image) = store.person("c", "a").unwrap();
    assert_eq!(
        image,
        Some(vec![1]),
        "a person is shown with their first face"
    );
    assert!(store.verify().unwrap().is_empty());
}

/// Face `j` of person `i`: a person's faces are alike (small phase steps), as photos of one
/// person are, so the best templates of a search crowd with the faces of one person.
fn face_of(i: u32, j: u32) -> Vec<f32> {
    let mut v: Vec<f32> = (0..512)
        .map(|d| (d as f32 * 0.37 + i as f32 * 1.71 + j as f32 * 0.03).sin())
        .collect();
    l2_normalise(&mut v);
    v
}

#[test]
fn the_best_k_persons_are_exactly_those_of_a_brute_force_over_every_face() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &StoreOptions::default()).unwrap();
    store.create_collection("c").unwrap();
    // 60 persons with 1 to 5 faces each.
    let faces: Vec<(String, Vec<f32>)> = (0..60u32)
        .flat_map(|i| (0..=i % 5).map(move |j| (format!("p{i}"), face_of(i, j))))
        .collect();
    let items = (0..60u32)
        .map(|i| Enrolment {
            person_id: format!("p{i}"),
            person_name: String::new(),
            metadata: BTreeMap::new(),
            access: None,
            faces: (0..=i % 5)
                .map(|j| NewFace {
                    template: face_of(i, j),
                    image: None,
                    storage: FaceStorage::NoStorage,
                })
                .collect(),
        })
        .collect();
    store.enrol("c", items, None).unwrap();
    for (i, j) in [(4, 2), (9, 7), (33, 1), (58, 40), (1000, 0)] {
        let probe = face_of(i, j);
        let mut best: BTreeMap<&str, f32> = BTreeMap::new();
        for (id, t) in &faces {
            let score: f32 = t.iter().zip(&probe).map(|(a, b)| a * b).sum();
            let e = best.entry(id).or_insert(f32::MIN);
            *e = e.max(score);
        }
        let mut expected: Vec<(&str, f32)> = best.into_iter().collect();
        expected.sort_by(|a, b| b.1.total_cmp(&a.1));
        for k in [1, 3, 10] {
            let (hits, _) = store.search("c", &probe, k, -1.0, Images::NONE).unwrap();
            let got: Vec<&str> = hits.iter().map(|m| m.person.person_id.as_str()).collect();
            let want: Vec<&str> = expected[..k].iter().map(|(id, _)| *id).collect();
            assert_eq!(got, want, "probe {i}/{j} k {k}");
            for (m, (_, s)) in hits.iter().zip(&expected) {
                assert!((m.closeness - s).abs() < 1e-4);
            }
        }
    }
}

#[test]
fn faces_are_added_and_deleted_with_ids_never_reused_and_the_changes_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        max_faces_per_person: 3,
        ..StoreOptions::default()
    };
    {
        let store = open(dir.path(), &options).unwrap();
        store.create_collection("c").unwrap();
        store
            .enrol("c", vec![person_with_faces("a", &[1])], None)
            .unwrap();
        let added = store.add_face("c", "a", new_face(2), None, None);
        let added = added.unwrap().unwrap();
        assert_eq!((added.person.num_faces, added.face.face_id), (2, 2));
        let added = store.add_face("c", "a", new_face(3), None, None);
        assert_eq!(added.unwrap().unwrap().face.face_id, 3);
        assert!(matches!(
            store.add_face("c", "a", new_face(4), None, None),
            Err(StoreError::TooManyFaces { max: 3 })
        ));
        let person = store.delete_face("c", "a", 2).unwrap();
        assert_eq!(person.num_faces, 2);
        assert!(matches!(
            store.delete_face("c", "a", 2),
            Err(StoreError::FaceNotFound)
        ));
        // A deleted face's id is not given to the next face.
        let added = store.add_face("c", "a", new_face(5), None, None);
        assert_eq!(added.unwrap().unwrap().face.face_id, 4);
        assert!(matches!(
            store.add_face("c", "nobody", new_face(6), None, None),
            Err(StoreError::PersonNotFound)
        ));
        // A face of another person is refused as a duplicate, and nothing is written.
        store
            .enrol("c", vec![person_with_faces("b", &[20])], None)
            .unwrap();
        let refused = store.add_face("c", "b", new_face(1), None, Some(0.9));
        assert_eq!(
            refused.unwrap().unwrap_err(),
            FaceRefused::Duplicate("a".to_string())
        );
        assert_eq!(store.person("c", "b").unwrap().0.num_faces, 1);
        // A face must be like every face of the person, not just the nearest: b has faces
        // b0 and b1 (b1 close to b0); a face close to b1 but not to b0 is refused.
        let mix = |parts: &[(u32, f32)]| {
            let mut t = vec![0f32; 512];
            for &(seed, w) in parts {
                t.iter_mut()
                    .zip(template(seed))
                    .for_each(|(x, v)| *x += w * v);
            }
            l2_normalise(&mut t);
            t
        };
        let dot = |a: &[f32], b: &[f32]| -> f32 { a.iter().zip(b).map(|(x, y)| x * y).sum() };
        let b1 = mix(&[(20, 1.0), (21, 0.4)]);
        let drifted = mix(&[(20, 1.0), (21, 0.9)]);
        let min = 0.9;
        assert!(dot(&template(20), &b1) >= min && dot(&b1, &drifted) >= min);
        assert!(dot(&template(20), &drifted) < min);
        let face = |t: Vec<f32>| NewFace {
            template: t,
            image: None,
            storage: FaceStorage::NoStorage,
        };
        let added = store.add_face("c", "b", face(b1), Some(min), None);
        assert!(added.unwrap().is_ok());
        let refused = store.add_face("c", "b", face(drifted), Some(min), None);
        match refused.unwrap() {
            Err(FaceRefused::NotSamePerson {
                least_closeness: Some(c),
            }) => assert!(c < min),
            other => panic!("{other:?}"),
        }
        assert_eq!(store.person("c", "b").unwrap().0.num_faces, 2);
    }
    let store = open(dir.path(), &options).unwrap();
    assert!(store.verify().unwrap().is_empty());
    let (person, faces) = store.faces("c", "a", Images::ALL).unwrap();
    let ids: Vec<u32> = faces.iter().map(|(f, _)| f.face_id).collect();
    assert_eq!(ids, [1, 3, 4]);
    assert_eq!(person.num_faces, 3);
    assert_eq!(faces[2].1, Some(vec![5]));
    let found = |seed| {
        store
            .search("c", &template(seed), 1, 0.99, Images::NONE)
            .unwrap()
            .0
            .first()
            .map(|m| (m.person.person_id.clone(), m.face_id))
    };
    assert_eq!(found(3), Some(("a".into(), 3)));
    assert_eq!(found(5), Some(("a".into(), 4)));
    assert_eq!(found(2), None, "a deleted face no longer matches");
    // Down to one face, which stays.
    store.delete_face("c", "a", 1).unwrap();
    store.delete_face("c", "a", 3).unwrap();
    assert!(matches!(
        store.delete_face("c", "a", 4),
        Err(StoreError::LastFace)
    ));
    assert_eq!(found(5), Some(("a".into(), 4)));
    store.delete_person("c", "a").unwrap();
    assert_eq!(found(5), None);
    assert!(store.verify().unwrap().is_empty());
}

#[test]
fn enrolling_a_person_again_replaces_all_their_faces() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &StoreOptions::default()).unwrap();
    store.create_collection("c").unwrap();
    store
        .enrol("c", vec![person_with_faces("a", &[1, 2, 3])], None)
        .unwrap();
    let out = store
        .enrol("c", vec![person_with_faces("a", &[4])], None)
        .unwrap();
    let person = out[0].as_ref().unwrap();
    assert_eq!(person.num_faces, 1);
    assert_eq!(
        person.faces[0].face_id, 4,
        "ids go on from the replaced faces"
    );
    for old in [1, 2, 3] {
        let (hits, _) = store
            .search("c", &template(old), 1, 0.99, Images::NONE)
            .unwrap();
        assert!(hits.is_empty(), "face {old} was replaced");
    }
    assert!(store.verify().unwrap().is_empty());
    assert!(matches!(
        store.enrol("c", vec![person_with_faces("b", &[1, 2, 3, 4, 5, 6])], None),
        Err(StoreError::TooManyFaces { max: 5 })
    ));
}

#[test]
fn access_rules_are_stored_with_the_person_and_kept_when_a_new_photo_comes_without_them() {
    use facegate_core::access::rules::PersonAccess;
    let dir = tempfile::tempdir().unwrap();
    let rules = PersonAccess {
        valid_until: Some("2027-01-01T00:00:00Z".parse().unwrap()),
        doors: Some(vec!["main".into()]),
        schedule: Some("office".into()),
        blocked: true,
        ..Default::default()
    };
    {
        let store = open(dir.path(), &StoreOptions::default()).unwrap();
        store.create_collection("c").unwrap();
        let mut a = person_with_faces("a", &[1]);
        a.access = Some(rules.clone());
        store.enrol("c", vec![a], None).unwrap();
        // A new photo without rules must not lift the block.
        store
            .enrol("c", vec![person_with_faces("a", &[2])], None)
            .unwrap();
    }
    let store = open(dir.path(), &StoreOptions::default()).unwrap();
    let (person, _) = store.person("c", "a").unwrap();
    assert_eq!(person.access.as_ref(), Some(&rules));
    let mut cleared = person_with_faces("a", &[3]);
    cleared.access = Some(PersonAccess::default());
    store.enrol("c", vec![cleared], None).unwrap();
    let (person, _) = store.person("c", "a").unwrap();
    assert_eq!(person.access, Some(PersonAccess::default()));
    let (other, _) = {
        store
            .enrol("c", vec![person_with_faces("b", &[4])], None)
            .unwrap();
        store.person("c", "b").unwrap()
    };
    assert_eq!(other.access, None, "a person without rules has none");
}
