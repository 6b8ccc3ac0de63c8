//! The LMDB store on a real disk: durability across reopen, atomic collection deletion, map
//! growth, and refusal of a store made by another embedding model.

use std::collections::BTreeMap;
use std::sync::Arc;

use facegate_core::clock::SystemClock;
use facegate_core::engine::embedder::{l2_normalise, Metric};
use facegate_core::store::{
    Enrolment, FaceStorage, Images, ModelId, Page, Store, StoreError, StoreOptions,
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
    Enrolment {
        person_id: id.into(),
        person_name: format!("Name of {id}"),
        metadata: BTreeMap::from([("team".to_string(), "blue".to_string())]),
        template: template(seed),
        storage: if image.is_some() {
            FaceStorage::StoreThumbnails
        } else {
            FaceStorage::NoStorage
        },
        image,
    }
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
