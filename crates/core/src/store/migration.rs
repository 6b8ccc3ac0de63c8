//! Upgrading a store written by an earlier schema version, inside the transaction that opens
//! it: a crash leaves either the old store or the new one.

use std::ops::Bound;

use heed::RwTxn;

use super::records::{face_key, split_face_key, split_person_key, FaceRecord};
use super::{Store, StoreError};

impl Store {
    /// Version 1 kept one template and one image per person under the person key; version 2
    /// keeps them per face. Every person becomes a person with face 1, in the caller's
    /// transaction, so a crash leaves either the old store or the new one. Returns the
    /// number of persons moved.
    pub(super) fn migrate_from_one_face_per_person(
        &self,
        txn: &mut RwTxn,
    ) -> Result<u64, StoreError> {
        const CHUNK: usize = 4096;
        let mut moved = 0;
        let mut after: Option<Vec<u8>> = None;
        loop {
            // A face key sorts right after its person key, so walking on from the last person
            // key moved passes over the keys just written.
            let range = (
                after.as_deref().map_or(Bound::Unbounded, Bound::Excluded),
                Bound::Unbounded,
            );
            let mut chunk = Vec::with_capacity(CHUNK);
            for entry in self.templates.range(txn, &range)? {
                let (key, value) = entry?;
                if split_face_key(key).is_none() {
                    chunk.push((key.to_vec(), value.to_vec()));
                    if chunk.len() == CHUNK {
                        break;
                    }
                }
            }
            let Some((last, _)) = chunk.last() else {
                // Face ids are unique in the store from now on; every migrated face is 1.
                self.meta.put(txn, "next_face_id", "2")?;
                return Ok(moved);
            };
            after = Some(last.clone());
            for (key, template) in chunk {
                let corrupt = || StoreError::Corrupt(String::from_utf8_lossy(&key).into_owned());
                let (collection, person_id) = split_person_key(&key).ok_or_else(corrupt)?;
                let new_key = face_key(collection, person_id, 1);
                let Some(mut person) = self.persons.get(txn, &key)? else {
                    // Version 1 never wrote this (a template and its person were one
                    // transaction); refusing to open over it would strand every enrolment.
                    tracing::warn!(key = %String::from_utf8_lossy(&key),
                        "a version-1 template without a person: dropped in the migration");
                    self.templates.delete(txn, &key)?;
                    self.images.delete(txn, &key)?;
                    continue;
                };
                person.faces = vec![FaceRecord {
                    face_id: 1,
                    created_at_ms: person.updated_at_ms,
                    storage: person.storage,
                }];
                person.num_faces = 1;
                self.persons.put(txn, &key, &person)?;
                self.templates.delete(txn, &key)?;
                self.templates.put(txn, &new_key, &template)?;
                if let Some(image) = self.images.get(txn, &key)?.map(<[u8]>::to_vec) {
                    self.images.delete(txn, &key)?;
                    self.images.put(txn, &new_key, &image)?;
                }
                moved += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::clock::SystemClock;
    use crate::engine::embedder::Metric;
    use crate::store::records::person_key;
    use crate::store::{Enrolment, FaceStorage, Images, ModelId, StoreOptions, SCHEMA_VERSION};

    fn model() -> ModelId {
        ModelId {
            id: "test4@0000".into(),
            dim: 4,
            metric: Metric::Cosine,
        }
    }

    fn open(dir: &std::path::Path) -> Store {
        Store::open(
            dir,
            model(),
            &StoreOptions::default(),
            Arc::new(SystemClock),
        )
        .unwrap()
    }

    /// Rewrite a freshly written store into the version-1 layout: templates and images under
    /// the person key, no face list in the person record, schema version 1.
    fn downgrade_to_version_one(store: &Store) {
        let _w = store.writer.lock().unwrap();
        store
            .write(|txn| {
                let faces: Vec<(Vec<u8>, Vec<u8>)> = store
                    .templates
                    .iter(txn)?
                    .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())))
                    .collect::<Result<_, _>>()?;
                for (key, template) in faces {
                    let (c, p, _) = split_face_key(&key).unwrap();
                    let person = person_key(c, p);
                    store.templates.delete(txn, &key)?;
                    store.templates.put(txn, &person, &template)?;
                    if let Some(image) = store.images.get(txn, &key)?.map(<[u8]>::to_vec) {
                        store.images.delete(txn, &key)?;
                        store.images.put(txn, &person, &image)?;
                    }
                    let mut record = store.persons.get(txn, &person)?.unwrap();
                    record.faces.clear();
                    store.persons.put(txn, &person, &record)?;
                }
                store.meta.delete(txn, "next_face_id")?;
                store.meta.put(txn, "schema_version", "1")?;
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn a_version_one_store_is_migrated_on_open_and_keeps_every_person_template_and_image() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open(dir.path());
            store.create_collection("staff").unwrap();
            // More persons than one migration chunk, with ids that are prefixes of others
            // (p1, p10, p100) so face keys and person keys interleave.
            let items = (0..5000u32)
                .map(|i| {
                    let mut t = vec![0.0; 4];
                    t[(i % 4) as usize] = 1.0;
                    t[((i + 1) % 4) as usize] = i as f32 / 5000.0;
                    Enrolment::one_face(
                        format!("p{i}"),
                        format!("P {i}"),
                        BTreeMap::new(),
                        t,
                        Some(vec![(i % 251) as u8; 3]),
                        FaceStorage::StoreThumbnails,
                    )
                })
                .collect();
            store.enrol("staff", items, None).unwrap();
            downgrade_to_version_one(&store);
        }
        let store = open(dir.path());
        assert_eq!(store.verify().unwrap(), Vec::<String>::new());
        let schema = store
            .read(|txn| Ok(store.meta.get(txn, "schema_version")?.map(str::to_owned)))
            .unwrap();
        assert_eq!(schema, Some(SCHEMA_VERSION.to_string()));
        for i in [0u32, 1, 10, 100, 1000, 4095, 4096, 4999] {
            let (person, image) = store.person("staff", &format!("p{i}")).unwrap();
            assert_eq!(person.num_faces, 1);
            assert_eq!(person.faces[0].face_id, 1);
            assert_eq!(image, Some(vec![(i % 251) as u8; 3]));
        }
        let probe = [1.0, 0.0, 0.0, 0.0];
        let (hits, _) = store.search("staff", &probe, 1, 0.99, Images::ALL).unwrap();
        assert_eq!(hits[0].person.person_id, "p0");
        assert_eq!(hits[0].image, Some(vec![0; 3]));
        // The next face anywhere in the store gets id 2.
        let face = crate::store::NewFace {
            template: vec![1.0, 0.01, 0.0, 0.0],
            image: None,
            storage: FaceStorage::NoStorage,
        };
        let added = store
            .add_face("staff", "p4", face, None, None)
            .unwrap()
            .unwrap();
        assert_eq!(added.face.face_id, 2);
        // Opening again changes nothing.
        drop(store);
        let store = open(dir.path());
        assert_eq!(store.verify().unwrap(), Vec::<String>::new());
        assert_eq!(store.counts(), (1, 5000));
    }
}
