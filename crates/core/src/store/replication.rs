//! The store's side of fleet replication (crate::fleet): the change feed written in the same
//! transaction as each gallery write, the records built from it, and records of other
//! appliances applied last-writer-wins.
//!
//! Two tables beside the gallery: `fleet_versions` holds every person's and collection's
//! current version (tombstones included), `fleet_pending` the registers changed here and not
//! yet acknowledged by the broker. A pending entry names a register, not a change: a person
//! edited ten times while the broker was away is published once, in its latest state.

use heed::types::{Bytes, SerdeJson};
use heed::{Database, RoTxn, RwTxn, WithoutTls};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::index::CollectionIndex;
use super::records::{
    collection_prefix, decode_template, encode_template, face_key, person_key, split_person_key,
    template_parts,
};
use super::{CollectionRecord, FaceRecord, FaceStorage, PersonRecord, Store, StoreError};
use crate::fleet::{ClockState, FaceState, PersonState, Record, Version};

/// A register's version and whether it is a tombstone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    pub version: Version,
    pub deleted: bool,
    /// A collection's last deletion, while it exists again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<Version>,
}

impl Stamp {
    /// When the register was last deleted (now, or before it was created again).
    pub fn last_deletion(&self) -> Option<&Version> {
        if self.deleted {
            Some(&self.version)
        } else {
            self.deleted_at.as_ref()
        }
    }
}

pub(super) type Stamps = Database<'static, Bytes, SerdeJson<Stamp>>;
pub(super) type Pending = Database<'static, Bytes, SerdeJson<Version>>;

/// What became of one record given to [`Store::apply_records`].
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    /// Newer than what the store had: applied.
    Applied,
    /// The store holds this version already (an echo, a redelivery).
    Same,
    /// The store holds a newer version; it is queued to be published again, so that the
    /// broker's retained copy (and any appliance that holds the older one) catches up.
    Older,
    /// Its person's collection was deleted after it was written.
    Superseded,
    /// Its templates are of another embedding model than this store's.
    WrongModel(String),
    /// Its templates cannot be read or are of another dimension.
    Invalid(String),
}

impl Applied {
    pub fn label(&self) -> &'static str {
        match self {
            Applied::Applied => "applied",
            Applied::Same => "same",
            Applied::Older => "older",
            Applied::Superseded => "superseded",
            Applied::WrongModel(_) => "wrong_model",
            Applied::Invalid(_) => "invalid",
        }
    }
}

/// How far ahead of this appliance's clock a record's version may be.
const MAX_CLOCK_AHEAD_MS: i64 = 86_400_000;
/// Faces a replicated person may have.
const MAX_FACES: usize = 32;

/// What [`Store::reconcile_after_sync`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reconciled {
    /// Registers the broker lacked, queued to be published again.
    pub queued: Vec<Vec<u8>>,
    /// Persons deleted here (deleted elsewhere while this appliance was away).
    pub deleted: usize,
    /// Registers (persons, collections) the broker lacked that were left alone: too many to
    /// be deletions (a broker that lost its store while this appliance was away).
    pub held: usize,
}

/// The register a key names: `p` + person key, or `q` + collection name. Persons sort first,
/// so that a collection's deletion goes out behind its persons' tombstones: a receiver then
/// finds in the collection's tombstone only the persons the deleting appliance did not know.
pub fn register_key(collection: &str, person_id: Option<&str>) -> Vec<u8> {
    match person_id {
        Some(p) => {
            let mut k = vec![b'p'];
            k.extend_from_slice(&person_key(collection, p));
            k
        }
        None => {
            let mut k = vec![b'q'];
            k.extend_from_slice(collection.as_bytes());
            k
        }
    }
}

/// The collection and person id of a register key.
pub fn split_register_key(key: &[u8]) -> Option<(String, Option<String>)> {
    match key.split_first()? {
        (b'p', rest) => {
            let (c, p) = split_person_key(rest)?;
            Some((c.to_owned(), Some(p.to_owned())))
        }
        (b'q', rest) => Some((std::str::from_utf8(rest).ok()?.to_owned(), None)),
        _ => None,
    }
}

/// Changes to the search index, made once the transaction has committed.
enum IndexChange {
    Create(String),
    Drop(String),
    Remove(String, String, Vec<u32>),
    Add(String, String, Vec<(u32, Vec<f32>)>),
}

impl Store {
    /// Record a version for every write from now on, as `device`, and call `changed` after
    /// each commit that queued records. Registers without a version (a gallery from before
    /// the fleet was enabled) or changed while it was off get a new one now and are queued.
    /// Returns how many.
    pub fn start_change_feed(
        &self,
        device: &str,
        changed: Box<dyn Fn() + Send + Sync>,
    ) -> Result<usize, StoreError> {
        let _w = self.writer.lock().unwrap();
        let _ = self.feed.set(device.to_owned());
        let _ = self.on_change.set(changed);
        let queued = self.write(|txn| {
            // (collection, person, deleted) of every register the store disagrees with: no
            // version yet (a gallery from before the fleet), or changed while the fleet was
            // off (deleted, created again, edited after its version).
            let mut stale: Vec<(String, Option<String>, bool)> = Vec::new();
            for entry in self.collections.iter(txn)? {
                let (name, _) = entry?;
                let stamp = self.fleet_versions.get(txn, &register_key(name, None))?;
                if stamp.is_none_or(|s| s.deleted) {
                    stale.push((name.to_owned(), None, false));
                }
            }
            for entry in self.persons.iter(txn)? {
                let (key, person) = entry?;
                let (c, p) = split_person_key(key)
                    .ok_or_else(|| StoreError::Corrupt(String::from_utf8_lossy(key).into()))?;
                let stamp = self.fleet_versions.get(txn, &register_key(c, Some(p)))?;
                if stamp.is_none_or(|s| s.deleted || person.updated_at_ms > s.version.wall_ms) {
                    stale.push((c.to_owned(), Some(p.to_owned()), false));
                }
            }
            for entry in self.fleet_versions.iter(txn)? {
                let (key, stamp) = entry?;
                if stamp.deleted {
                    continue;
                }
                let gone = match split_register_key(key) {
                    Some((c, Some(p))) => self.persons.get(txn, &person_key(&c, &p))?.is_none(),
                    Some((c, None)) => self.collections.get(txn, &c)?.is_none(),
                    None => false,
                };
                if gone {
                    if let Some((c, p)) = split_register_key(key) {
                        stale.push((c, p, true));
                    }
                }
            }
            for (c, p, deleted) in &stale {
                self.note_change(txn, c, p.as_deref(), *deleted)?;
            }
            Ok(stale.len())
        })?;
        self.changed();
        Ok(queued)
    }

    /// In a write transaction: give the register a new version and queue it for publishing
    /// (nothing while the change feed is off).
    pub(super) fn note_change(
        &self,
        txn: &mut RwTxn,
        collection: &str,
        person_id: Option<&str>,
        deleted: bool,
    ) -> Result<(), StoreError> {
        if let Some(version) = self.next_version(txn)? {
            self.queue_version(txn, &register_key(collection, person_id), &version, deleted)?;
        }
        Ok(())
    }

    /// A new version from the clock (`None` while the change feed is off).
    pub(super) fn next_version(&self, txn: &mut RwTxn) -> Result<Option<Version>, StoreError> {
        let Some(device) = self.feed.get() else {
            return Ok(None);
        };
        let mut clock = self.clock_state(txn)?;
        let (wall_ms, counter) = clock.tick(self.clock.now_ms());
        self.meta.put(txn, "fleet_clock", &clock.encode())?;
        Ok(Some(Version {
            wall_ms,
            counter,
            device: device.clone(),
        }))
    }

    /// Give the register `version` and queue it for publishing.
    pub(super) fn queue_version(
        &self,
        txn: &mut RwTxn,
        key: &[u8],
        version: &Version,
        deleted: bool,
    ) -> Result<(), StoreError> {
        let previous = self.fleet_versions.get(txn, key)?;
        let stamp = Stamp {
            version: version.clone(),
            deleted,
            deleted_at: match deleted {
                true => None,
                false => previous.as_ref().and_then(Stamp::last_deletion).cloned(),
            },
        };
        self.fleet_versions.put(txn, key, &stamp)?;
        self.fleet_pending.put(txn, key, version)?;
        Ok(())
    }

    /// Tell the change feed's listener that records are queued.
    pub(super) fn changed(&self) {
        if let Some(f) = self.on_change.get() {
            f();
        }
    }

    fn clock_state(&self, txn: &RwTxn) -> Result<ClockState, StoreError> {
        match self.meta.get(txn, "fleet_clock")? {
            Some(text) => ClockState::decode(text)
                .ok_or_else(|| StoreError::Corrupt("meta fleet_clock".into())),
            None => Ok(ClockState::default()),
        }
    }

    /// Up to `limit` queued registers after `after` (in key order), with their versions.
    pub fn pending_records(
        &self,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Version)>, StoreError> {
        self.read(|txn| {
            let range = (
                after.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded),
                std::ops::Bound::Unbounded,
            );
            let mut out = Vec::new();
            for entry in self.fleet_pending.range(txn, &range)? {
                let (key, version) = entry?;
                out.push((key.to_vec(), version));
                if out.len() == limit {
                    break;
                }
            }
            Ok(out)
        })
    }

    /// How many registers wait to be published.
    pub fn pending_count(&self) -> usize {
        self.read(|txn| Ok(self.fleet_pending.len(txn)? as usize))
            .unwrap_or(0)
    }

    /// The record of a register in its current state (`None`: it has no version).
    /// Thumbnails go with it when `thumbnails` is set; full enrolment photos never do.
    pub fn outgoing_record(
        &self,
        key: &[u8],
        thumbnails: bool,
    ) -> Result<Option<Record>, StoreError> {
        let Some((collection, person_id)) = split_register_key(key) else {
            return Ok(None);
        };
        self.read(|txn| {
            let Some(stamp) = self.fleet_versions.get(txn, key)? else {
                return Ok(None);
            };
            let mut record = Record {
                collection: collection.clone(),
                person_id: person_id.clone(),
                version: stamp.version,
                deleted: stamp.deleted,
                person: None,
                deleted_at: stamp.deleted_at.filter(|_| person_id.is_none()),
            };
            let Some(id) = person_id.as_deref().filter(|_| !stamp.deleted) else {
                return Ok(Some(record));
            };
            let Some(person) = self.persons.get(txn, &person_key(&collection, id))? else {
                return Ok(None);
            };
            let mut faces = Vec::with_capacity(person.faces.len());
            for face in &person.faces {
                let fk = face_key(&collection, id, face.face_id);
                let Some((_, values)) = self.templates.get(txn, &fk)?.and_then(template_parts)
                else {
                    return Err(StoreError::Corrupt(String::from_utf8_lossy(&fk).into()));
                };
                let image = if thumbnails && face.storage == FaceStorage::StoreThumbnails {
                    self.images.get(txn, &fk)?.map(|b| {
                        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b)
                    })
                } else {
                    None
                };
                faces.push(FaceState {
                    template: FaceState::encode_values(values),
                    storage: face.storage,
                    image,
                });
            }
            record.person = Some(PersonState {
                person_name: person.person_name,
                metadata: person.metadata,
                access: person.access,
                created_at_ms: person.created_at_ms,
                model: self.model.id.clone(),
                faces,
            });
            Ok(Some(record))
        })
    }

    /// The broker acknowledged the register's record at `version`: no longer pending, unless
    /// it changed again meanwhile.
    pub fn record_published(&self, key: &[u8], version: &Version) -> Result<(), StoreError> {
        self.records_published(&[(key.to_vec(), version.clone())])
    }

    /// [`Store::record_published`] for many, in one transaction.
    pub fn records_published(&self, done: &[(Vec<u8>, Version)]) -> Result<(), StoreError> {
        if done.is_empty() {
            return Ok(());
        }
        let _w = self.writer.lock().unwrap();
        self.write(|txn| {
            for (key, version) in done {
                if self.fleet_pending.get(txn, key)?.as_ref() == Some(version) {
                    self.fleet_pending.delete(txn, key)?;
                }
            }
            Ok(())
        })
    }

    /// Apply other appliances' records in one transaction: each is applied only when newer
    /// than the register's version here.
    pub fn apply_records(&self, records: &[Record]) -> Result<Vec<Applied>, StoreError> {
        Ok(self.apply_records_requeuing(records)?.0)
    }

    /// [`Store::apply_records`], also returning the registers queued again (to repair the
    /// broker's copy), which a publisher must send even if it sent that version before.
    pub fn apply_records_requeuing(
        &self,
        records: &[Record],
    ) -> Result<(Vec<Applied>, Vec<Vec<u8>>), StoreError> {
        let _w = self.writer.lock().unwrap();
        let now = self.clock.now_ms();
        let mut indexes = self.indexes.write().unwrap();
        let (outcomes, changes, repairs) = self.write(|txn| {
            let mut outcomes = Vec::with_capacity(records.len());
            let mut changes = Vec::new();
            let mut repairs = Vec::new();
            let mut clock = self.clock_state(txn)?;
            for record in records {
                let outcome = self.apply_one(txn, record, now, &mut changes, &mut repairs)?;
                if outcome == Applied::Applied {
                    clock.observe(&record.version);
                }
                outcomes.push(outcome);
            }
            self.meta.put(txn, "fleet_clock", &clock.encode())?;
            Ok((outcomes, changes, repairs))
        })?;
        self.apply_index_changes(&mut indexes, changes);
        drop(indexes);
        if !repairs.is_empty() {
            self.changed();
        }
        Ok((outcomes, repairs))
    }

    fn apply_index_changes(
        &self,
        indexes: &mut std::collections::HashMap<String, CollectionIndex>,
        changes: Vec<IndexChange>,
    ) {
        for change in changes {
            match change {
                IndexChange::Create(c) => {
                    indexes
                        .entry(c)
                        .or_insert_with(|| CollectionIndex::new(self.model.dim, self.model.metric));
                }
                IndexChange::Drop(c) => {
                    indexes.remove(&c);
                }
                IndexChange::Remove(c, p, faces) => {
                    if let Some(index) = indexes.get_mut(&c) {
                        for f in faces {
                            index.remove(&p, f);
                        }
                    }
                }
                IndexChange::Add(c, p, faces) => {
                    if let Some(index) = indexes.get_mut(&c) {
                        let n = faces.len() as u32;
                        for (f, values) in faces {
                            index.upsert(&p, f, &values);
                        }
                        index.note_faces(n);
                    }
                }
            }
        }
    }

    fn apply_one(
        &self,
        txn: &mut RwTxn,
        record: &Record,
        now: i64,
        changes: &mut Vec<IndexChange>,
        repairs: &mut Vec<Vec<u8>>,
    ) -> Result<Applied, StoreError> {
        let c = record.collection.as_str();
        if c.is_empty() || c.len() > 64 {
            return Ok(Applied::Invalid("collection name of 1 to 64 bytes".into()));
        }
        if record
            .person_id
            .as_ref()
            .is_some_and(|p| p.is_empty() || p.len() > 256)
        {
            return Ok(Applied::Invalid("person id of 1 to 256 bytes".into()));
        }
        if record.version.wall_ms > now.saturating_add(MAX_CLOCK_AHEAD_MS)
            || record.version.wall_ms < 0
            || record.version.counter > u32::MAX / 2
        {
            // It would win every conflict for ever (and never expire).
            return Ok(Applied::Invalid(format!(
                "version {} ms ahead of this clock",
                record.version.wall_ms.saturating_sub(now)
            )));
        }
        let key = register_key(c, record.person_id.as_deref());
        let previous = self.fleet_versions.get(txn, &key)?;
        if let Some(ours) = &previous {
            if ours.version == record.version {
                return Ok(Applied::Same);
            }
            if ours.version > record.version {
                if self.feed.get().is_some() {
                    self.fleet_pending.put(txn, &key, &ours.version)?;
                    repairs.push(key.clone());
                }
                return Ok(Applied::Older);
            }
        }
        if record.person_id.is_some() {
            // A person written before their collection was deleted stays deleted, whichever
            // of the two records arrives first.
            let deleted_later = self
                .fleet_versions
                .get(txn, &register_key(c, None))?
                .and_then(|s| s.last_deletion().cloned())
                .filter(|d| *d > record.version);
            if let Some(deletion) = deleted_later {
                // Replace the broker's stale copy too, or a joining appliance would apply
                // it once the collection is created again.
                if previous.as_ref().is_none_or(|p| p.version < deletion) {
                    self.queue_version(txn, &key, &deletion, true)?;
                    repairs.push(key.clone());
                }
                return Ok(Applied::Superseded);
            }
        }
        match (&record.person_id, &record.person) {
            (Some(p), Some(state)) if !record.deleted => {
                if state.model != self.model.id {
                    return Ok(Applied::WrongModel(state.model.clone()));
                }
                let mut values = Vec::with_capacity(state.faces.len());
                for face in &state.faces {
                    match face.values() {
                        Some(v) if v.len() == self.model.dim => values.push(v),
                        _ => {
                            return Ok(Applied::Invalid(format!(
                                "a template is not {} values",
                                self.model.dim
                            )))
                        }
                    }
                }
                if values.is_empty() || values.len() > MAX_FACES {
                    return Ok(Applied::Invalid(format!(
                        "a person has 1 to {MAX_FACES} faces"
                    )));
                }
                self.ensure_collection(txn, c, now, changes)?;
                // Updated at the change's time, not ours: a later start of the change feed
                // must not take it for an edit made while the fleet was off.
                self.replace_person(txn, c, p, state, values, record.version.wall_ms, changes)?;
            }
            (Some(p), _) => {
                if self.remove_person(txn, c, p, changes)? {
                    self.adjust_count(txn, c, -1)?;
                }
            }
            (None, _) => {
                // A deletion (now, or before the collection was created again): persons
                // written before it go; those written after it (on an appliance that had not
                // seen it) stay, and with them the collection.
                let deletion = match record.deleted {
                    true => Some(&record.version),
                    false => record.deleted_at.as_ref(),
                };
                let known = previous.as_ref().and_then(Stamp::last_deletion);
                let kept = match deletion.filter(|d| known.is_none_or(|k| *d > k)) {
                    Some(d) => self.sweep_collection(txn, c, d, changes, repairs)?,
                    None => 1,
                };
                if record.deleted && kept == 0 {
                    if self.collections.delete(txn, c)? {
                        changes.push(IndexChange::Drop(c.to_owned()));
                    }
                } else {
                    self.ensure_collection(txn, c, now, changes)?;
                }
            }
        }
        let last_deletion = match record.deleted {
            true => None,
            false => [
                previous.as_ref().and_then(Stamp::last_deletion),
                record.deleted_at.as_ref(),
            ]
            .into_iter()
            .flatten()
            .max()
            .cloned(),
        };
        self.fleet_versions.put(
            txn,
            &key,
            &Stamp {
                version: record.version.clone(),
                deleted: record.deleted,
                deleted_at: last_deletion,
            },
        )?;
        // A newer version from elsewhere replaces one queued here: nothing left to publish.
        self.fleet_pending.delete(txn, &key)?;
        Ok(Applied::Applied)
    }

    /// Delete the persons of `c` written before `deletion`, queueing their tombstones (the
    /// broker's copies may come from appliances the deleting one never heard of). Returns how
    /// many persons stay.
    fn sweep_collection(
        &self,
        txn: &mut RwTxn,
        c: &str,
        deletion: &Version,
        changes: &mut Vec<IndexChange>,
        repairs: &mut Vec<Vec<u8>>,
    ) -> Result<u64, StoreError> {
        let mut kept = 0u64;
        for p in self.person_ids(txn, c)? {
            let pk = register_key(c, Some(&p));
            let stamp = self.fleet_versions.get(txn, &pk)?;
            if stamp.as_ref().is_some_and(|s| s.version > *deletion) {
                kept += 1;
                continue;
            }
            if self.remove_person(txn, c, &p, changes)? {
                self.adjust_count(txn, c, -1)?;
            }
            if stamp.is_none_or(|s| s.version < *deletion) {
                self.queue_version(txn, &pk, deletion, true)?;
                repairs.push(pk);
            }
        }
        Ok(kept)
    }

    /// The ids of a collection's persons.
    pub(super) fn person_ids(
        &self,
        txn: &RoTxn<WithoutTls>,
        collection: &str,
    ) -> Result<Vec<String>, StoreError> {
        let mut ids = Vec::new();
        for entry in self
            .persons
            .prefix_iter(txn, &collection_prefix(collection))?
        {
            let (k, _) = entry?;
            if let Some((_, p)) = split_person_key(k) {
                ids.push(p.to_owned());
            }
        }
        Ok(ids)
    }

    fn ensure_collection(
        &self,
        txn: &mut RwTxn,
        c: &str,
        now: i64,
        changes: &mut Vec<IndexChange>,
    ) -> Result<(), StoreError> {
        if self.collections.get(txn, c)?.is_none() {
            let record = CollectionRecord {
                name: c.to_owned(),
                num_persons: 0,
                created_at_ms: now,
            };
            self.collections.put(txn, c, &record)?;
            changes.push(IndexChange::Create(c.to_owned()));
        }
        Ok(())
    }

    fn adjust_count(&self, txn: &mut RwTxn, c: &str, by: i64) -> Result<(), StoreError> {
        if let Some(mut rec) = self.collections.get(txn, c)? {
            rec.num_persons = rec.num_persons.saturating_add_signed(by);
            self.collections.put(txn, c, &rec)?;
        }
        Ok(())
    }

    /// Delete a person and their faces; whether there was one.
    fn remove_person(
        &self,
        txn: &mut RwTxn,
        c: &str,
        p: &str,
        changes: &mut Vec<IndexChange>,
    ) -> Result<bool, StoreError> {
        let key = person_key(c, p);
        let Some(person) = self.persons.get(txn, &key)? else {
            return Ok(false);
        };
        self.persons.delete(txn, &key)?;
        self.delete_faces(txn, c, p)?;
        changes.push(IndexChange::Remove(
            c.to_owned(),
            p.to_owned(),
            person.faces.iter().map(|f| f.face_id).collect(),
        ));
        Ok(true)
    }

    #[allow(clippy::too_many_arguments)]
    fn replace_person(
        &self,
        txn: &mut RwTxn,
        c: &str,
        p: &str,
        state: &PersonState,
        values: Vec<Vec<f32>>,
        now: i64,
        changes: &mut Vec<IndexChange>,
    ) -> Result<(), StoreError> {
        if !self.remove_person(txn, c, p, changes)? {
            self.adjust_count(txn, c, 1)?;
        }
        let first = self.take_face_ids(txn, values.len() as u32)?;
        let mut faces = Vec::with_capacity(values.len());
        let mut added = Vec::with_capacity(values.len());
        for (i, (face, v)) in state.faces.iter().zip(values).enumerate() {
            let face_id = first + i as u32;
            let fk = face_key(c, p, face_id);
            self.templates
                .put(txn, &fk, &encode_template(&self.model.id, &v))?;
            let image = face.image.as_deref().and_then(|b| {
                base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b).ok()
            });
            if let Some(bytes) = &image {
                self.images.put(txn, &fk, bytes)?;
            }
            faces.push(FaceRecord {
                face_id,
                created_at_ms: now,
                storage: face.storage,
            });
            added.push((face_id, v));
        }
        let person = PersonRecord {
            person_id: p.to_owned(),
            person_name: state.person_name.clone(),
            metadata: state.metadata.clone(),
            created_at_ms: state.created_at_ms,
            updated_at_ms: now,
            num_faces: faces.len() as u32,
            storage: faces[0].storage,
            faces,
            access: state.access.clone(),
        };
        self.persons.put(txn, &person_key(c, p), &person)?;
        changes.push(IndexChange::Add(c.to_owned(), p.to_owned(), added));
        Ok(())
    }

    /// After taking the broker's whole retained state (`seen`: the registers it held): a
    /// register here that the broker did not have is either lost by the broker (a new broker,
    /// a wiped store), then it is queued to be published again; or, on an appliance whose
    /// last full sync is older than `tombstone_ms`, deleted elsewhere with its tombstone
    /// expired meanwhile, then it is deleted here too (`prune`). Registers written since
    /// `sync_started_ms` are left alone. Records the sync time. Returns (queued, deleted).
    pub fn reconcile_after_sync(
        &self,
        seen: &std::collections::HashSet<Vec<u8>>,
        sync_started_ms: i64,
        tombstone_ms: i64,
    ) -> Result<Reconciled, StoreError> {
        let _w = self.writer.lock().unwrap();
        let now = self.clock.now_ms();
        let mut indexes = self.indexes.write().unwrap();
        let (outcome, changes) = self.write(|txn| {
            let prune = self.stale_in(txn, now, tombstone_ms)?;
            let old = now.saturating_sub(tombstone_ms);
            let mut unseen = Vec::new();
            let mut live = 0usize;
            for entry in self.fleet_versions.iter(txn)? {
                let (key, stamp) = entry?;
                live += usize::from(!stamp.deleted);
                if seen.contains(key) || stamp.version.wall_ms >= sync_started_ms {
                    continue;
                }
                // A queued change the broker cannot have yet; but one older than the
                // tombstones live, made here while cut off, may undo a deletion whose
                // tombstone has expired: it goes with the pruning below.
                if self.fleet_pending.get(txn, key)?.is_some()
                    && !(prune && !stamp.deleted && stamp.version.wall_ms < old)
                {
                    continue;
                }
                unseen.push((key.to_vec(), stamp));
            }
            let mut outcome = Reconciled::default();
            let mut changes = Vec::new();
            let unseen_live = unseen.iter().filter(|(_, s)| !s.deleted).count();
            if prune && unseen_live > 0 && (seen.is_empty() || unseen_live > (live / 4).max(20)) {
                // An empty broker, or most of the gallery gone: more likely a broker that lost
                // its store than deletions. Neither deleted nor published: the operator decides
                // (docs/fleet.md).
                outcome.held = unseen_live;
                return Ok((outcome, changes));
            }
            for (key, stamp) in unseen {
                if !prune {
                    // Tombstones are not published again: one that expired elsewhere would
                    // come back. An appliance that still holds the person publishes them,
                    // older, and gets the tombstone back as a repair.
                    if self.feed.get().is_some() && !stamp.deleted {
                        self.fleet_pending.put(txn, &key, &stamp.version)?;
                        outcome.queued.push(key);
                    }
                    continue;
                }
                if stamp.deleted {
                    continue;
                }
                match split_register_key(&key) {
                    Some((c, Some(p))) => {
                        if self.remove_person(txn, &c, &p, &mut changes)? {
                            self.adjust_count(txn, &c, -1)?;
                            outcome.deleted += 1;
                        }
                    }
                    Some((c, None)) => {
                        let empty = self
                            .collections
                            .get(txn, &c)?
                            .is_some_and(|r| r.num_persons == 0);
                        if !empty {
                            continue;
                        }
                        if self.collections.delete(txn, &c)? {
                            changes.push(IndexChange::Drop(c));
                        }
                    }
                    None => continue,
                }
                // Forgotten, not tombstoned: should another appliance still hold it (the
                // broker was replaced too), its record brings it back; and a later start of
                // the change feed does not take it for a deletion made here.
                self.fleet_versions.delete(txn, &key)?;
                self.fleet_pending.delete(txn, &key)?;
            }
            self.meta.put(txn, "fleet_synced_at_ms", &now.to_string())?;
            Ok((outcome, changes))
        })?;
        self.apply_index_changes(&mut indexes, changes);
        drop(indexes);
        if !outcome.queued.is_empty() {
            self.changed();
        }
        Ok(outcome)
    }

    /// Whether the last full sync is older than `tombstone_ms`: tombstones may have expired
    /// since, so deletions made meanwhile are known only by the absence of their persons.
    pub fn sync_is_stale(&self, tombstone_ms: i64) -> bool {
        let now = self.clock.now_ms();
        self.read(|txn| self.stale_in(txn, now, tombstone_ms))
            .unwrap_or(false)
    }

    fn stale_in(
        &self,
        txn: &RoTxn<WithoutTls>,
        now: i64,
        tombstone_ms: i64,
    ) -> Result<bool, StoreError> {
        let last: Option<i64> = self
            .meta
            .get(txn, "fleet_synced_at_ms")?
            .and_then(|t| t.parse().ok());
        Ok(last.is_some_and(|t| now.saturating_sub(t) > tombstone_ms))
    }

    /// Still connected and in step with the broker: what counts as the last sync.
    pub fn note_in_sync(&self) -> Result<(), StoreError> {
        let _w = self.writer.lock().unwrap();
        let now = self.clock.now_ms();
        self.write(|txn| {
            self.meta.put(txn, "fleet_synced_at_ms", &now.to_string())?;
            Ok(())
        })
    }

    /// Forget tombstones older than `max_age_ms`: returns their registers, whose retained
    /// records the daemon clears on the broker.
    pub fn expire_tombstones(
        &self,
        now_ms: i64,
        max_age_ms: i64,
        limit: usize,
    ) -> Result<Vec<(String, Option<String>)>, StoreError> {
        let _w = self.writer.lock().unwrap();
        self.write(|txn| {
            let mut old = Vec::new();
            for entry in self.fleet_versions.iter(txn)? {
                let (key, stamp) = entry?;
                // A tombstone the broker has not acknowledged yet is kept: it must reach the
                // appliances first.
                if stamp.deleted
                    && stamp.version.wall_ms < now_ms.saturating_sub(max_age_ms)
                    && self.fleet_pending.get(txn, key)?.is_none()
                {
                    old.push(key.to_vec());
                    if old.len() == limit {
                        break;
                    }
                }
            }
            let mut out = Vec::with_capacity(old.len());
            for key in old {
                self.fleet_versions.delete(txn, &key)?;
                if let Some(entity) = split_register_key(&key) {
                    out.push(entity);
                }
            }
            Ok(out)
        })
    }

    /// A digest of a collection's replicated content: every person's id, name, metadata,
    /// access rules, version and templates, in id order (not face ids or local times, which
    /// differ between appliances). Equal on two appliances when their galleries agree.
    pub fn digest(&self, collection: &str) -> Result<String, StoreError> {
        let prefix = collection_prefix(collection);
        self.read(|txn| {
            if self.collections.get(txn, collection)?.is_none() {
                return Err(StoreError::CollectionNotFound);
            }
            let mut hash = Sha256::new();
            for entry in self.persons.prefix_iter(txn, &prefix)? {
                let (_, person) = entry?;
                let field = |hash: &mut Sha256, bytes: &[u8]| {
                    hash.update((bytes.len() as u64).to_le_bytes());
                    hash.update(bytes);
                };
                field(&mut hash, person.person_id.as_bytes());
                field(&mut hash, person.person_name.as_bytes());
                field(
                    &mut hash,
                    &serde_json::to_vec(&person.metadata).unwrap_or_default(),
                );
                field(
                    &mut hash,
                    &serde_json::to_vec(&person.access).unwrap_or_default(),
                );
                let stamp = self
                    .fleet_versions
                    .get(txn, &register_key(collection, Some(&person.person_id)))?;
                field(
                    &mut hash,
                    &serde_json::to_vec(&stamp.map(|s| s.version)).unwrap_or_default(),
                );
                for face in &person.faces {
                    let fk = face_key(collection, &person.person_id, face.face_id);
                    let t = self.templates.get(txn, &fk)?.unwrap_or_default();
                    match decode_template(t) {
                        Some((_, v)) => {
                            for x in v {
                                hash.update(x.to_le_bytes());
                            }
                        }
                        None => hash.update(b"-"),
                    }
                }
            }
            Ok(format!("{:x}", hash.finalize()))
        })
    }

    /// Registers with a version (persons and collections, tombstones included), for
    /// `/health`: LMDB keeps the count, nothing is scanned per request.
    pub fn register_count(&self) -> usize {
        self.read(|txn| Ok(self.fleet_versions.len(txn)? as usize))
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::clock::Clock;
    use crate::engine::embedder::Metric;
    use crate::store::{Enrolment, Images, ModelId, Page, PersonEdit, StoreOptions};

    /// A clock the test sets: two appliances whose clocks disagree.
    struct TestClock(AtomicI64);

    impl Clock for TestClock {
        fn now_ms(&self) -> i64 {
            self.0.load(Ordering::Relaxed)
        }
    }

    struct Appliance {
        store: Store,
        clock: Arc<TestClock>,
        _dir: tempfile::TempDir,
    }

    fn appliance(device: &str, model: &str, now: i64) -> Appliance {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(TestClock(AtomicI64::new(now)));
        let store = Store::open(
            dir.path(),
            ModelId {
                id: model.into(),
                dim: 4,
                metric: Metric::Cosine,
            },
            &StoreOptions::default(),
            clock.clone(),
        )
        .unwrap();
        store.start_change_feed(device, Box::new(|| {})).unwrap();
        Appliance {
            store,
            clock,
            _dir: dir,
        }
    }

    fn enrol(a: &Appliance, id: &str, name: &str, seed: f32) {
        a.store
            .enrol(
                "staff",
                vec![Enrolment::one_face(
                    id.into(),
                    name.into(),
                    BTreeMap::new(),
                    vec![1.0, seed, 0.5, -seed],
                    Some(b"thumb".to_vec()),
                    FaceStorage::StoreThumbnails,
                )],
                None,
            )
            .unwrap()
            .remove(0)
            .unwrap();
    }

    fn rename(a: &Appliance, id: &str, name: &str) {
        a.store
            .edit_person(
                "staff",
                id,
                PersonEdit {
                    person_name: Some(name.into()),
                    ..PersonEdit::default()
                },
            )
            .unwrap();
    }

    /// Everything `from` has queued, as the broker would carry it (and acknowledged).
    fn drain(from: &Appliance) -> Vec<Record> {
        let mut out = Vec::new();
        for (key, version) in from.store.pending_records(None, usize::MAX).unwrap() {
            out.push(from.store.outgoing_record(&key, true).unwrap().unwrap());
            from.store.record_published(&key, &version).unwrap();
        }
        out
    }

    fn names(a: &Appliance) -> Vec<(String, String)> {
        let (_, persons) = a
            .store
            .list_persons(
                "staff",
                &Page {
                    take: 100,
                    ..Page::default()
                },
                Images::NONE,
            )
            .unwrap_or_default();
        persons
            .into_iter()
            .map(|(p, _)| (p.person_id, p.person_name))
            .collect()
    }

    #[test]
    fn a_write_queues_its_register_in_the_same_commit_and_the_broker_ack_clears_it() {
        let a = appliance("a", "m@1", 1_000);
        a.store.create_collection("staff").unwrap();
        enrol(&a, "p1", "Ann", 0.1);
        let pending = a.store.pending_records(None, 10).unwrap();
        assert_eq!(pending.len(), 2, "the collection and the person");
        let record = a
            .store
            .outgoing_record(&pending[0].0, true)
            .unwrap()
            .unwrap();
        assert_eq!(record.person_id.as_deref(), Some("p1"));
        assert_eq!(record.version.device, "a");
        let person = record.person.unwrap();
        assert_eq!(person.faces[0].image.as_deref(), Some("dGh1bWI="));
        assert_eq!(person.faces[0].values().unwrap().len(), 4);
        // Changed again before the broker acknowledged the first record: still pending.
        rename(&a, "p1", "Ann B");
        a.store
            .record_published(&pending[0].0, &pending[0].1)
            .unwrap();
        assert_eq!(a.store.pending_count(), 2);
        drain(&a);
        assert_eq!(a.store.pending_count(), 0);
    }

    #[test]
    fn records_converge_in_any_order_and_applied_twice_change_nothing() {
        let a = appliance("a", "m@1", 1_000);
        let b = appliance("b", "m@1", 5_000);
        a.store.create_collection("staff").unwrap();
        enrol(&a, "p1", "Ann", 0.1);
        enrol(&a, "p2", "Bob", 0.2);
        let first = drain(&a);
        let outcomes = b.store.apply_records(&first).unwrap();
        assert!(
            outcomes.iter().all(|o| *o == Applied::Applied),
            "{outcomes:?}"
        );
        assert_eq!(
            b.store.digest("staff").unwrap(),
            a.store.digest("staff").unwrap()
        );
        // The applied person is searchable at once.
        let (hits, _) = b
            .store
            .search("staff", &[1.0, 0.2, 0.5, -0.2], 1, 0.99, Images::NONE)
            .unwrap();
        assert_eq!(hits[0].person.person_id, "p2");
        assert_eq!(
            b.store.apply_records(&first).unwrap(),
            vec![Applied::Same; first.len()]
        );

        // Conflicting edits of p1: A's clock is behind B's, but B edits after seeing A's
        // record, so B's edit is later whatever the wall clocks say.
        a.clock.0.store(2_000, Ordering::Relaxed);
        rename(&a, "p1", "Ann (A)");
        rename(&b, "p1", "Ann (B)");
        a.store.delete_person("staff", "p2").unwrap();
        let from_a = drain(&a);
        let from_b = drain(&b);
        // B gets A's changes in reverse order, A gets B's: both end at the same gallery.
        let mut reversed = from_a.clone();
        reversed.reverse();
        b.store.apply_records(&reversed).unwrap();
        let back = a.store.apply_records(&from_b).unwrap();
        assert_eq!(back, vec![Applied::Applied]);
        assert_eq!(names(&a), vec![("p1".into(), "Ann (B)".into())]);
        assert_eq!(names(&b), names(&a));
        assert_eq!(
            b.store.digest("staff").unwrap(),
            a.store.digest("staff").unwrap()
        );
        assert!(a.store.verify().unwrap().is_empty());
        assert!(b.store.verify().unwrap().is_empty());
        assert_eq!(a.store.collection("staff").unwrap().num_persons, 1);
        assert_eq!(b.store.collection("staff").unwrap().num_persons, 1);
    }

    #[test]
    fn an_older_record_is_refused_and_the_newer_state_queued_again() {
        let a = appliance("a", "m@1", 1_000);
        let b = appliance("b", "m@1", 1_000);
        a.store.create_collection("staff").unwrap();
        enrol(&a, "p1", "Ann", 0.1);
        let old = drain(&a);
        b.store.apply_records(&old).unwrap();
        a.clock.0.store(3_000, Ordering::Relaxed);
        enrol(&a, "p1", "Ann 2", 0.3);
        let new = drain(&a);
        b.store.apply_records(&new).unwrap();
        // The broker still held the old record (published late by someone): B keeps the new
        // one and queues it again.
        assert_eq!(b.store.pending_count(), 0);
        assert_eq!(
            b.store.apply_records(&old[..1]).unwrap(),
            vec![Applied::Older]
        );
        assert_eq!(names(&b), vec![("p1".into(), "Ann 2".into())]);
        let again = drain(&b);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].version, new[0].version);
    }

    #[test]
    fn templates_of_another_model_are_refused() {
        let a = appliance("a", "m@1", 1_000);
        let b = appliance("b", "m@2", 1_000);
        a.store.create_collection("staff").unwrap();
        enrol(&a, "p1", "Ann", 0.1);
        let records = drain(&a);
        let outcomes = b.store.apply_records(&records).unwrap();
        assert_eq!(outcomes[0], Applied::WrongModel("m@1".into()));
        assert!(names(&b).is_empty());
    }

    #[test]
    fn a_deleted_collection_takes_its_older_persons_whichever_record_comes_first() {
        let a = appliance("a", "m@1", 1_000);
        let b = appliance("b", "m@1", 1_000);
        let c = appliance("c", "m@1", 1_000);
        a.store.create_collection("staff").unwrap();
        enrol(&a, "p1", "Ann", 0.1);
        let created = drain(&a);
        a.clock.0.store(2_000, Ordering::Relaxed);
        a.store.delete_collection("staff").unwrap();
        let deleted = drain(&a);
        assert_eq!(
            deleted.len(),
            2,
            "a tombstone for the person and one for the collection"
        );
        // B: creation first, then deletion. C: the collection's tombstone first, then the
        // old person record (the broker's retained order is not the write order).
        b.store.apply_records(&created).unwrap();
        b.store.apply_records(&deleted).unwrap();
        let collection_tombstone: Vec<Record> = deleted
            .iter()
            .filter(|r| r.person_id.is_none())
            .cloned()
            .collect();
        c.store.apply_records(&collection_tombstone).unwrap();
        assert_eq!(
            c.store.apply_records(&created[..1]).unwrap(),
            vec![Applied::Superseded]
        );
        for s in [&b, &c] {
            assert!(matches!(
                s.store.collection("staff"),
                Err(StoreError::CollectionNotFound)
            ));
            assert_eq!(s.store.counts(), (0, 0));
        }
    }

    #[test]
    fn old_tombstones_are_forgotten_and_named_for_clearing() {
        let a = appliance("a", "m@1", 1_000);
        a.store.create_collection("staff").unwrap();
        enrol(&a, "p1", "Ann", 0.1);
        a.store.delete_person("staff", "p1").unwrap();
        assert_eq!(
            a.store.register_count(),
            2,
            "the collection and p1's tombstone"
        );
        assert!(a
            .store
            .expire_tombstones(1_500, 1_000, 100)
            .unwrap()
            .is_empty());
        // Old enough, but not yet acknowledged by the broker: kept until it is.
        assert!(a
            .store
            .expire_tombstones(5_000, 1_000, 100)
            .unwrap()
            .is_empty());
        drain(&a);
        let gone = a.store.expire_tombstones(5_000, 1_000, 100).unwrap();
        assert_eq!(gone, vec![("staff".to_owned(), Some("p1".to_owned()))]);
        assert_eq!(a.store.register_count(), 1);
    }

    #[test]
    fn a_gallery_from_before_the_fleet_is_queued_when_the_feed_starts() {
        let dir = tempfile::tempdir().unwrap();
        let model = ModelId {
            id: "m@1".into(),
            dim: 4,
            metric: Metric::Cosine,
        };
        let clock = Arc::new(TestClock(AtomicI64::new(1_000)));
        let store =
            Store::open(dir.path(), model, &StoreOptions::default(), clock.clone()).unwrap();
        store.create_collection("staff").unwrap();
        assert_eq!(store.pending_count(), 0, "no feed, no records");
        let a = Appliance {
            store,
            clock,
            _dir: dir,
        };
        enrol(&a, "p1", "Ann", 0.1);
        assert_eq!(a.store.start_change_feed("a", Box::new(|| {})).unwrap(), 2);
        assert_eq!(drain(&a).len(), 2);
    }
    #[test]
    fn after_a_full_sync_what_the_broker_lacks_is_published_again_or_pruned_when_stale() {
        let a = appliance("a", "m@1", 1_000);
        a.store.create_collection("staff").unwrap();
        enrol(&a, "p1", "Ann", 0.1);
        enrol(&a, "p3", "Cid", 0.3);
        drain(&a);
        let collection = register_key("staff", None);
        let p3 = register_key("staff", Some("p3"));
        // The broker lost its retained state: everything here goes out again.
        let none = std::collections::HashSet::new();
        let r = a.store.reconcile_after_sync(&none, 2_000, 10_000).unwrap();
        assert_eq!((r.queued.len(), r.deleted, r.held), (3, 0, 0));
        assert_eq!(drain(&a).len(), 3);
        assert_eq!(names(&a).len(), 2, "nothing deleted");

        // Away longer than the tombstones live, and the broker is empty: most likely a broker
        // that lost its store too. Nothing is deleted (nor published).
        a.clock.0.store(50_000, Ordering::Relaxed);
        assert!(a.store.sync_is_stale(10_000));
        let r = a.store.reconcile_after_sync(&none, 40_000, 10_000).unwrap();
        assert_eq!(
            (r.queued.len(), r.deleted, r.held),
            (0, 0, 3),
            "the collection and 2 persons"
        );
        assert_eq!(names(&a).len(), 2);

        // Away again; the broker has the collection and p3 but no p1 (deleted elsewhere, its
        // tombstone expired). p2, written during the sync, stays.
        a.clock.0.store(100_000, Ordering::Relaxed);
        enrol(&a, "p2", "Bob", 0.2);
        let seen = std::collections::HashSet::from([collection, p3]);
        let r = a.store.reconcile_after_sync(&seen, 90_000, 10_000).unwrap();
        assert_eq!((r.queued.len(), r.deleted, r.held), (0, 1, 0));
        assert_eq!(
            names(&a),
            vec![("p2".into(), "Bob".into()), ("p3".into(), "Cid".into())]
        );
        assert!(a.store.verify().unwrap().is_empty());
        // Synced just now: the next sync is not stale, nothing is pruned.
        assert!(!a.store.sync_is_stale(10_000));
        let r = a.store.reconcile_after_sync(&none, 90_000, 10_000).unwrap();
        assert_eq!(r.deleted, 0);
    }

    #[test]
    fn a_collection_deletion_is_one_version_and_its_receivers_queue_persons_it_did_not_know() {
        let a = appliance("a", "m@1", 1_000);
        let b = appliance("b", "m@1", 1_000);
        a.store.create_collection("staff").unwrap();
        enrol(&a, "p1", "Ann", 0.1);
        b.store.apply_records(&drain(&a)).unwrap();
        // B enrols p2 without A knowing it; A deletes the collection later.
        b.clock.0.store(1_500, Ordering::Relaxed);
        enrol(&b, "p2", "Bob", 0.2);
        let from_b = drain(&b);
        a.clock.0.store(2_000, Ordering::Relaxed);
        a.store.delete_collection("staff").unwrap();
        let deletion = drain(&a);
        assert!(deletion
            .iter()
            .all(|r| r.version == deletion[0].version && r.deleted));
        let outcomes = b.store.apply_records(&deletion).unwrap();
        // p1's tombstone comes first; the collection's then finds only p2, which A did not know.
        assert_eq!(outcomes, vec![Applied::Applied, Applied::Applied]);
        // B queues a tombstone for p2, which the broker holds live from B.
        let repaired = drain(&b);
        assert_eq!(repaired.len(), 1, "{repaired:?}");
        assert_eq!(repaired[0].person_id.as_deref(), Some("p2"));
        assert!(repaired[0].deleted);
        // An appliance that gets B's old p2 record after the deletion refuses it.
        let c = appliance("c", "m@1", 3_000);
        c.store.apply_records(&deletion).unwrap();
        assert_eq!(
            c.store.apply_records(&from_b[..1]).unwrap(),
            vec![Applied::Superseded]
        );
        assert_eq!(c.store.counts(), (0, 0));
    }

    #[test]
    fn changes_made_while_the_fleet_was_off_are_queued_when_it_starts_again() {
        let dir = tempfile::tempdir().unwrap();
        let model = || ModelId {
            id: "m@1".into(),
            dim: 4,
            metric: Metric::Cosine,
        };
        let clock = Arc::new(TestClock(AtomicI64::new(1_000)));
        {
            let store =
                Store::open(dir.path(), model(), &StoreOptions::default(), clock.clone()).unwrap();
            store.start_change_feed("a", Box::new(|| {})).unwrap();
            store.create_collection("staff").unwrap();
            let a = Appliance {
                store,
                clock: clock.clone(),
                _dir: tempfile::tempdir().unwrap(),
            };
            enrol(&a, "p1", "Ann", 0.1);
            enrol(&a, "p2", "Bob", 0.2);
            drain(&a);
        }
        // Reopened with the fleet off: p1 deleted, p2 edited.
        clock.0.store(2_000, Ordering::Relaxed);
        let store =
            Store::open(dir.path(), model(), &StoreOptions::default(), clock.clone()).unwrap();
        store.delete_person("staff", "p1").unwrap();
        store
            .edit_person(
                "staff",
                "p2",
                PersonEdit {
                    person_name: Some("Bob B".into()),
                    ..PersonEdit::default()
                },
            )
            .unwrap();
        assert_eq!(store.pending_count(), 0);
        clock.0.store(3_000, Ordering::Relaxed);
        assert_eq!(store.start_change_feed("a", Box::new(|| {})).unwrap(), 2);
        let a = Appliance {
            store,
            clock,
            _dir: dir,
        };
        let records = drain(&a);
        let p1 = records
            .iter()
            .find(|r| r.person_id.as_deref() == Some("p1"))
            .unwrap();
        assert!(p1.deleted);
        let p2 = records
            .iter()
            .find(|r| r.person_id.as_deref() == Some("p2"))
            .unwrap();
        assert_eq!(p2.person.as_ref().unwrap().person_name, "Bob B");
    }

    #[test]
    fn hostile_records_are_refused_without_touching_the_store() {
        let a = appliance("a", "m@1", 1_000);
        let b = appliance("b", "m@1", 1_000);
        a.store.create_collection("staff").unwrap();
        enrol(&a, "p1", "Ann", 0.1);
        let good = drain(&a);
        let mut future = good[0].clone();
        future.version.wall_ms = i64::MAX / 2;
        let mut long_name = good[0].clone();
        long_name.collection = "x".repeat(300);
        let mut long_id = good[0].clone();
        long_id.person_id = Some("y".repeat(300));
        long_id.deleted = true;
        long_id.person = None;
        let mut bad_template = good[0].clone();
        bad_template.person.as_mut().unwrap().faces[0].template = "AAAA".into();
        for bad in [future, long_name, long_id, bad_template] {
            assert!(matches!(
                b.store.apply_records(&[bad]).unwrap()[0],
                Applied::Invalid(_)
            ));
        }
        assert_eq!(b.store.counts(), (0, 0));
        assert_eq!(b.store.register_count(), 0);
    }
    #[test]
    fn a_collection_created_again_keeps_the_persons_written_before_its_deletion_out() {
        let a = appliance("a", "m@1", 1_000);
        let b = appliance("b", "m@1", 1_000);
        a.store.create_collection("staff").unwrap();
        b.store.apply_records(&drain(&a)).unwrap();
        // B enrols p0 while cut off; A deletes the collection and creates it again.
        b.clock.0.store(1_500, Ordering::Relaxed);
        enrol(&b, "p0", "Old", 0.1);
        let p0 = drain(&b);
        a.clock.0.store(2_000, Ordering::Relaxed);
        a.store.delete_collection("staff").unwrap();
        a.clock.0.store(3_000, Ordering::Relaxed);
        a.store.create_collection("staff").unwrap();
        let recreated = drain(&a);
        assert_eq!(
            recreated.len(),
            1,
            "the deletion's record was replaced before publishing"
        );
        assert_eq!(
            recreated[0].deleted_at.as_ref().map(|v| v.wall_ms),
            Some(2_000)
        );
        // A joining appliance that sees only the collection as created again refuses p0, and
        // so does A; B, which never saw the deletion, drops p0 and queues its tombstone.
        let c = appliance("c", "m@1", 3_000);
        c.store.apply_records(&recreated).unwrap();
        assert_eq!(
            c.store.apply_records(&p0[..1]).unwrap(),
            vec![Applied::Superseded]
        );
        assert_eq!(
            a.store.apply_records(&p0[..1]).unwrap(),
            vec![Applied::Superseded]
        );
        b.store.apply_records(&recreated).unwrap();
        assert!(names(&b).is_empty());
        let tombstone = drain(&b);
        assert!(tombstone
            .iter()
            .any(|r| r.person_id.as_deref() == Some("p0") && r.deleted));
        for s in [&a, &b, &c] {
            assert_eq!(s.store.counts(), (1, 0));
        }
    }
}
