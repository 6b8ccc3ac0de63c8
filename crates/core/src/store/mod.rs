//! The gallery: collections, persons, templates and stored images in LMDB (heed), plus the
//! in-memory search index kept in step with every write.
//!
//! Durability: every write is one LMDB transaction committed with LMDB's default sync, so a
//! call that returned `Ok` survives a crash or power cut; a write that did not return `Ok`
//! left nothing behind. A full map is grown and the write retried instead of failing.

pub mod index;
mod migration;
pub mod records;
pub mod replication;

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use heed::types::{Bytes, SerdeJson, Str};
use heed::{CommitOrAbort, Database, Env, EnvOpenOptions, MdbError, RoTxn, RwTxn, WithoutTls};

use crate::access::rules::PersonAccess;
use crate::clock::Clock;
use crate::engine::embedder::Metric;
use index::{exact_key, CollectionIndex, ScanStats};
use records::{
    collection_prefix, decode_template, encode_template, face_key, person_faces_prefix, person_key,
    split_face_key, split_person_key,
};
pub use records::{CollectionRecord, FaceRecord, FaceStorage, PersonRecord, SCHEMA_VERSION};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Lmdb(#[from] heed::Error),
    #[error("cannot use data directory {path}: {source}")]
    Directory {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the store in {dir} holds templates made by embedding model {stored}, but this \
         configuration embeds with {current}; templates of different models cannot be compared. \
         Either configure the model the store was made with (inference.embedder and inference.precision), or re-enrol: \
         stop facegate, move {dir} aside, start it again and enrol every person from their \
         photos (PUT /persons)"
    )]
    WrongModel {
        dir: PathBuf,
        stored: String,
        current: String,
    },
    #[error(
        "the store in {dir} has schema version {found}; this facegate reads version {SCHEMA_VERSION} \
         (use the facegate release that wrote it, or move the directory aside and re-enrol)"
    )]
    Schema { dir: PathBuf, found: String },
    #[error("collection not found")]
    CollectionNotFound,
    #[error("person not found")]
    PersonNotFound,
    #[error("face not found")]
    FaceNotFound,
    #[error("the person already has {max} faces (store.max_faces_per_person); delete one first")]
    TooManyFaces { max: u32 },
    #[error("a person keeps at least one face: delete the person instead")]
    LastFace,
    #[error("a person is enrolled with at least one face")]
    NoFace,
    #[error("collection already exists")]
    CollectionExists,
    #[error("corrupt record under key {0:?}")]
    Corrupt(String),
    #[error("the store is full: its map reached store.max_map_mib ({limit_mib} MiB)")]
    Full { limit_mib: usize },
}

/// The embedding model templates come from: compared on open, recorded with each template.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelId {
    /// Name and fingerprint, e.g. `arcface512@3f2a…`.
    pub id: String,
    pub dim: usize,
    pub metric: Metric,
}

/// Store settings.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Initial LMDB map size in bytes (grows by doubling when full).
    pub map_size: usize,
    /// The map never grows past this, in bytes.
    pub max_map_size: usize,
    /// Drop the file pages read while loading the index from this process's resident set
    /// (they stay in the page cache). Keeps a board's RSS at the index, not the file.
    pub release_pages_after_load: bool,
    /// Faces one person may have (`store.max_faces_per_person`).
    pub max_faces_per_person: u32,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            map_size: 256 << 20,
            max_map_size: 16 << 30,
            release_pages_after_load: true,
            max_faces_per_person: 5,
        }
    }
}

/// Which stored images a listing or a search copies out of the store. Full enrolment photos
/// can be megabytes each, so a page of them is read only when asked for, and only up to a
/// byte budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Images {
    /// Stored thumbnails (`StoreThumbnails`).
    pub thumbnails: bool,
    /// Stored enrolment photos (`StoreFullImage`).
    pub full: bool,
    /// Bytes of images copied out at most; images past it are left out.
    pub max_bytes: usize,
}

impl Images {
    /// No image at all (the camera pipeline, duplicate checks).
    pub const NONE: Images = Images {
        thumbnails: false,
        full: false,
        max_bytes: 0,
    };
    /// Every stored image, without a budget.
    pub const ALL: Images = Images {
        thumbnails: true,
        full: true,
        max_bytes: usize::MAX,
    };

    /// Whether this policy asks for an image stored this way.
    pub fn wants(&self, storage: FaceStorage) -> bool {
        match storage {
            FaceStorage::NoStorage => false,
            FaceStorage::StoreThumbnails => self.thumbnails,
            FaceStorage::StoreFullImage => self.full,
        }
    }

    /// The image stored under `key` (kept as `storage` says), if this policy and what is
    /// left of its budget (`spent` so far) allow it.
    fn take(
        &self,
        spent: &mut usize,
        images: &Database<'static, Bytes, Bytes>,
        txn: &RoTxn<WithoutTls>,
        key: &[u8],
        storage: FaceStorage,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        if !self.wants(storage) {
            return Ok(None);
        }
        let Some(bytes) = images.get(txn, key)? else {
            return Ok(None);
        };
        if spent.saturating_add(bytes.len()) > self.max_bytes {
            return Ok(None);
        }
        *spent += bytes.len();
        Ok(Some(bytes.to_vec()))
    }
}

/// One face to write.
#[derive(Debug, Clone)]
pub struct NewFace {
    pub template: Vec<f32>,
    /// Thumbnail or full image bytes, as `storage` says; `None` with `NoStorage`.
    pub image: Option<Vec<u8>>,
    pub storage: FaceStorage,
}

/// What `Store::edit_person` changes; `None` keeps.
#[derive(Debug, Clone, Default)]
pub struct PersonEdit {
    pub person_name: Option<String>,
    pub metadata: Option<BTreeMap<String, String>>,
    pub access: Option<PersonAccess>,
}

/// One person to write, with all their faces (an enrolment replaces the faces a person had).
#[derive(Debug, Clone)]
pub struct Enrolment {
    pub person_id: String,
    pub person_name: String,
    pub metadata: BTreeMap<String, String>,
    /// The person's access rules; `None` keeps those of the person enrolled under this id
    /// before (re-enrolling a new photo must not lift a block), if any.
    pub access: Option<PersonAccess>,
    /// At least one, at most `max_faces_per_person`.
    pub faces: Vec<NewFace>,
}

impl Enrolment {
    /// A person enrolled from one photo.
    pub fn one_face(
        person_id: String,
        person_name: String,
        metadata: BTreeMap<String, String>,
        template: Vec<f32>,
        image: Option<Vec<u8>>,
        storage: FaceStorage,
    ) -> Self {
        Self {
            person_id,
            person_name,
            metadata,
            access: None,
            faces: vec![NewFace {
                template,
                image,
                storage,
            }],
        }
    }
}

/// A search result: a person, scored by the best of their faces.
#[derive(Debug, Clone)]
pub struct Match {
    pub person: PersonRecord,
    /// The face that scored best.
    pub face_id: u32,
    /// That face's stored image.
    pub image: Option<Vec<u8>>,
    /// Cosine, or minus the distance (see [`Metric::closeness`]).
    pub closeness: f32,
}

impl Match {
    /// How the matched face's image is kept.
    pub fn face_storage(&self) -> FaceStorage {
        self.person
            .faces
            .iter()
            .find(|f| f.face_id == self.face_id)
            .map_or(FaceStorage::NoStorage, |f| f.storage)
    }
}

/// A person and the stored image of the face they are shown with.
pub type StoredPerson = (PersonRecord, Option<Vec<u8>>);

/// A face and its stored image.
pub type StoredFace = (FaceRecord, Option<Vec<u8>>);

/// A face added to a person.
#[derive(Debug, Clone)]
pub struct AddedFace {
    pub person: PersonRecord,
    pub face: FaceRecord,
    /// Closeness of the new face to the person's least alike other face.
    pub least_closeness: Option<f32>,
}

/// Why a face was not added (nothing was written).
#[derive(Debug, Clone, PartialEq)]
pub enum FaceRefused {
    /// It matches this other person.
    Duplicate(String),
    /// It is not close enough to every face of the person (`None`: their templates cannot
    /// be read).
    NotSamePerson { least_closeness: Option<f32> },
}

/// Which page of a listing.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub skip: usize,
    pub take: usize,
    /// Case-insensitive substring of the name or id; empty: everything.
    pub search: String,
    pub descending: bool,
}

type Dbs = (
    Database<'static, Str, Str>,
    Database<'static, Str, SerdeJson<CollectionRecord>>,
    Database<'static, Bytes, SerdeJson<PersonRecord>>,
    Database<'static, Bytes, Bytes>,
    Database<'static, Bytes, Bytes>,
    replication::Stamps,
    replication::Pending,
);

pub struct Store {
    dir: PathBuf,
    env: Env<WithoutTls>,
    meta: Database<'static, Str, Str>,
    collections: Database<'static, Str, SerdeJson<CollectionRecord>>,
    persons: Database<'static, Bytes, SerdeJson<PersonRecord>>,
    templates: Database<'static, Bytes, Bytes>,
    images: Database<'static, Bytes, Bytes>,
    /// Each person's and collection's fleet version (replication).
    fleet_versions: replication::Stamps,
    /// Registers changed here and not yet acknowledged by the broker (replication).
    fleet_pending: replication::Pending,
    /// This appliance's device id, once the change feed is started.
    feed: std::sync::OnceLock<String>,
    /// Called after a commit that queued fleet records.
    on_change: std::sync::OnceLock<Box<dyn Fn() + Send + Sync>>,
    model: ModelId,
    clock: Arc<dyn Clock>,
    /// Serialises writers, so index updates happen in commit order.
    writer: Mutex<()>,
    /// Held shared by every transaction and exclusively to resize the map, which LMDB allows
    /// only while no transaction is open in the process.
    gate: RwLock<()>,
    indexes: RwLock<HashMap<String, CollectionIndex>>,
    /// Ceiling of the map (`store.max_map_mib`).
    max_map_size: usize,
    max_faces_per_person: u32,
}

impl Store {
    /// Open (or create) the store in `dir` for templates of `model`.
    pub fn open(
        dir: &Path,
        model: ModelId,
        options: &StoreOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Directory {
            path: dir.to_owned(),
            source,
        })?;
        // LMDB keeps the larger of this and the size recorded in the file; leave room to grow.
        let existing = std::fs::metadata(dir.join("data.mdb"))
            .map(|m| m.len() as usize)
            .unwrap_or(0);
        let page = page_size();
        let max_map_size = options.max_map_size.max(existing).div_ceil(page) * page;
        let map_size = (options.map_size.max(existing * 2).div_ceil(page) * page).min(max_map_size);
        let mut opts = EnvOpenOptions::new().read_txn_without_tls();
        opts.map_size(map_size).max_dbs(8).max_readers(256);
        // SAFETY: the data directory belongs to this process (systemd's StateDirectory or the
        // configured folder); heed refuses a second open of the same path in one process.
        let env = unsafe { opts.open(dir) }?;
        env.clear_stale_readers()?;
        let wtxn = env.write_txn()?;
        let (meta, collections, persons, templates, images, fleet_versions, fleet_pending): Dbs =
            env.create_databases_and_commit(wtxn, |dbo, wtxn| -> heed::Result<_> {
                Ok(CommitOrAbort::<_, ()>::Commit((
                    dbo.create_database(wtxn, Some("meta"))?,
                    dbo.create_database(wtxn, Some("collections"))?,
                    dbo.create_database(wtxn, Some("persons"))?,
                    dbo.create_database(wtxn, Some("templates"))?,
                    dbo.create_database(wtxn, Some("images"))?,
                    dbo.create_database(wtxn, Some("fleet_versions"))?,
                    dbo.create_database(wtxn, Some("fleet_pending"))?,
                )))
            })?
            .unwrap_commit();
        let store = Store {
            dir: dir.to_owned(),
            env,
            meta,
            collections,
            persons,
            templates,
            images,
            fleet_versions,
            fleet_pending,
            feed: std::sync::OnceLock::new(),
            on_change: std::sync::OnceLock::new(),
            model,
            clock,
            writer: Mutex::new(()),
            gate: RwLock::new(()),
            indexes: RwLock::new(HashMap::new()),
            max_map_size,
            max_faces_per_person: options.max_faces_per_person.max(1),
        };
        store.check_or_record_identity()?;
        store.load_indexes(options.release_pages_after_load)?;
        if options.release_pages_after_load {
            store.release_mapped_pages();
        }
        Ok(store)
    }

    /// The embedding model a store in `dir` was made for, without opening it for use: `None`
    /// when there is no store there yet. Read before the engines start, because with
    /// `inference.precision = "auto"` that record decides which model they load.
    pub fn recorded_model(dir: &Path) -> Result<Option<String>, StoreError> {
        if !dir.join("data.mdb").exists() {
            return Ok(None);
        }
        let mut opts = EnvOpenOptions::new().read_txn_without_tls();
        // LMDB maps the larger of this and the size recorded in the file.
        opts.map_size(page_size()).max_dbs(8);
        // SAFETY: as in `open`; this environment is closed again before `open` runs.
        let env = unsafe { opts.open(dir) }?;
        let meta = env
            .open_databases_and_commit(env.read_txn()?, |dbo, rtxn| -> heed::Result<_> {
                Ok(CommitOrAbort::<_, ()>::Commit(
                    dbo.open_database::<Str, Str>(rtxn, Some("meta"))?,
                ))
            })?
            .unwrap_commit();
        let Some(meta) = meta else {
            return Ok(None);
        };
        let rtxn = env.read_txn()?;
        let model = meta.get(&rtxn, "embedding_model")?.map(str::to_owned);
        Ok(model)
    }

    pub fn model(&self) -> &ModelId {
        &self.model
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn check_or_record_identity(&self) -> Result<(), StoreError> {
        let _w = self.writer.lock().unwrap();
        self.write(|txn| {
            match self.meta.get(txn, "schema_version")? {
                Some("1") => {
                    let persons = self.migrate_from_one_face_per_person(txn)?;
                    tracing::info!(
                        dir = %self.dir.display(),
                        persons,
                        "store migrated from schema version 1 (one face per person) to {SCHEMA_VERSION}"
                    );
                    self.meta
                        .put(txn, "schema_version", &SCHEMA_VERSION.to_string())?;
                }
                Some(v) if v != SCHEMA_VERSION.to_string() => {
                    return Err(StoreError::Schema {
                        dir: self.dir.clone(),
                        found: v.to_owned(),
                    })
                }
                Some(_) => {}
                None => self
                    .meta
                    .put(txn, "schema_version", &SCHEMA_VERSION.to_string())?,
            }
            match self.meta.get(txn, "embedding_model")? {
                Some(stored) if stored != self.model.id => Err(StoreError::WrongModel {
                    dir: self.dir.clone(),
                    stored: stored.to_owned(),
                    current: self.model.id.clone(),
                }),
                Some(_) => Ok(()),
                None => Ok(self.meta.put(txn, "embedding_model", &self.model.id)?),
            }
        })
    }

    fn load_indexes(&self, release_pages: bool) -> Result<(), StoreError> {
        let mut indexes = HashMap::new();
        self.read(|txn| {
            for entry in self.collections.iter(txn)? {
                let (name, _) = entry?;
                indexes.insert(
                    name.to_owned(),
                    CollectionIndex::new(self.model.dim, self.model.metric),
                );
            }
            // A person's faces are adjacent in key order: count each run.
            let mut run: (Vec<u8>, u32) = (Vec::new(), 0);
            for (n, entry) in self.templates.iter(txn)?.enumerate() {
                let (key, value) = entry?;
                // Keep the start-up peak near the steady state: without this, every page of
                // the file stays resident until the end of the load.
                if release_pages && n % 16_384 == 16_383 {
                    self.release_mapped_pages();
                }
                let corrupt = || StoreError::Corrupt(String::from_utf8_lossy(key).into_owned());
                let (collection, person_id, face) = split_face_key(key).ok_or_else(corrupt)?;
                let (_, values) = decode_template(value).ok_or_else(corrupt)?;
                if values.len() != self.model.dim {
                    return Err(corrupt());
                }
                let index = indexes.get_mut(collection).ok_or_else(corrupt)?;
                index.upsert(person_id, face, &values);
                let person = &key[..key.len() - 4];
                if run.0 == person {
                    run.1 += 1;
                    index.note_faces(run.1);
                } else {
                    run = (person.to_vec(), 1);
                }
            }
            Ok(())
        })?;
        for index in indexes.values_mut() {
            index.shrink_to_fit();
        }
        *self.indexes.write().unwrap() = indexes;
        Ok(())
    }

    /// Tell the kernel this process no longer needs the map's pages resident. They stay in
    /// the page cache and fault back in on the next read (re-scoring touches a few). LMDB
    /// does not report where it mapped the file (`mdb_env_info` gives an address only with
    /// `MDB_FIXEDMAP`), so the mapping is found in `/proc/self/maps`.
    fn release_mapped_pages(&self) {
        // The reasoning below holds only for LMDB's read-only map: with MDB_WRITEMAP the map
        // is written through, and dropping its pages could drop unwritten data.
        match self.env.get_flags() {
            Ok(flags) if flags & heed::EnvFlags::WRITE_MAP.bits() == 0 => {}
            other => {
                tracing::debug!(?other, "map not known to be read-only: pages kept resident");
                return;
            }
        }
        let file = self.dir.join("data.mdb");
        let file = std::fs::canonicalize(&file).unwrap_or(file);
        let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
            return;
        };
        for line in maps.lines() {
            let mut fields = line.split_whitespace();
            let (Some(range), Some(path)) = (fields.next(), fields.nth(4)) else {
                continue;
            };
            if std::path::Path::new(path) != file {
                continue;
            }
            let Some((start, end)) = range.split_once('-') else {
                continue;
            };
            let (Ok(start), Ok(end)) = (
                usize::from_str_radix(start, 16),
                usize::from_str_radix(end, 16),
            ) else {
                continue;
            };
            // SAFETY: the range is LMDB's read-only shared mapping of its data file (LMDB
            // writes through the file descriptor, not the map). MADV_DONTNEED on a shared
            // file mapping only drops this process's page-table entries; the data stays in the
            // file and the page cache, and a later read faults it back in, so this is safe even
            // with a read transaction open.
            let rc = unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED)
            };
            if rc != 0 {
                // Only a memory saving is lost: the pages stay resident.
                tracing::debug!(
                    error = %std::io::Error::last_os_error(),
                    "madvise(MADV_DONTNEED) on the LMDB map failed"
                );
            }
        }
    }

    /// Run `f` in a read transaction.
    fn read<R>(
        &self,
        f: impl FnOnce(&RoTxn<WithoutTls>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let _g = self.gate.read().unwrap();
        let txn = self.env.read_txn()?;
        f(&txn)
    }

    /// Run `f` in a write transaction and commit it, growing the map and retrying when it is
    /// full. The caller holds `self.writer`.
    fn write<R>(
        &self,
        mut f: impl FnMut(&mut RwTxn) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        loop {
            let gate = self.gate.read().unwrap();
            let mut txn = self.env.write_txn()?;
            let result = match f(&mut txn) {
                Ok(r) => txn.commit().map(|()| r).map_err(StoreError::from),
                Err(e) => {
                    txn.abort();
                    Err(e)
                }
            };
            match result {
                Err(StoreError::Lmdb(heed::Error::Mdb(MdbError::MapFull))) => {
                    drop(gate);
                    self.grow()?;
                }
                other => return other,
            }
        }
    }

    fn grow(&self) -> Result<(), StoreError> {
        let _g = self.gate.write().unwrap();
        let current = self.env.info().map_size;
        if current >= self.max_map_size {
            return Err(StoreError::Full {
                limit_mib: self.max_map_size >> 20,
            });
        }
        let new_size = (current * 2).min(self.max_map_size);
        tracing::info!(new_size, "LMDB map full; growing it");
        // SAFETY: the gate is held exclusively, so no transaction is open in this process.
        unsafe { self.env.resize(new_size) }?;
        Ok(())
    }

    pub fn create_collection(&self, name: &str) -> Result<CollectionRecord, StoreError> {
        let _w = self.writer.lock().unwrap();
        let record = CollectionRecord {
            name: name.to_owned(),
            num_persons: 0,
            created_at_ms: self.clock.now_ms(),
        };
        self.write(|txn| {
            if self.collections.get(txn, name)?.is_some() {
                return Err(StoreError::CollectionExists);
            }
            self.collections.put(txn, name, &record)?;
            self.note_change(txn, name, None, false)
        })?;
        self.changed();
        self.indexes.write().unwrap().insert(
            name.to_owned(),
            CollectionIndex::new(self.model.dim, self.model.metric),
        );
        Ok(record)
    }

    /// Delete a collection and everything in it, in one transaction. Returns the number of
    /// persons deleted.
    pub fn delete_collection(&self, name: &str) -> Result<u64, StoreError> {
        let _w = self.writer.lock().unwrap();
        let prefix = collection_prefix(name);
        let count = self.write(|txn| {
            let record = self
                .collections
                .get(txn, name)?
                .ok_or(StoreError::CollectionNotFound)?;
            if let Some(version) = self.next_version(txn)? {
                // A tombstone per person, so that their retained records on the broker are
                // replaced too; all of one version with the collection's, so that receivers
                // find them already applied.
                for p in self.person_ids(txn, name)? {
                    let key = replication::register_key(name, Some(&p));
                    self.queue_version(txn, &key, &version, true)?;
                }
                self.queue_version(txn, &replication::register_key(name, None), &version, true)?;
            }
            let end = prefix_end(&prefix);
            let range = prefix_range(&prefix, &end);
            self.persons.delete_range(txn, &range)?;
            self.templates.delete_range(txn, &range)?;
            self.images.delete_range(txn, &range)?;
            self.collections.delete(txn, name)?;
            Ok(record.num_persons)
        })?;
        self.changed();
        self.indexes.write().unwrap().remove(name);
        Ok(count)
    }

    pub fn collection(&self, name: &str) -> Result<CollectionRecord, StoreError> {
        self.read(|txn| {
            self.collections
                .get(txn, name)?
                .ok_or(StoreError::CollectionNotFound)
        })
    }

    /// Collections matching the page's search, and how many match in all.
    pub fn list_collections(
        &self,
        page: &Page,
    ) -> Result<(usize, Vec<CollectionRecord>), StoreError> {
        let needle = page.search.to_lowercase();
        self.read(|txn| {
            let mut all = Vec::new();
            for entry in self.collections.iter(txn)? {
                let (name, record) = entry?;
                if needle.is_empty() || name.to_lowercase().contains(&needle) {
                    all.push(record);
                }
            }
            Ok(paginate(all, page))
        })
    }

    /// Write persons (insert or replace, faces and all) in one transaction. With
    /// `duplicate_min_closeness`, an item one of whose faces matches another person of the
    /// collection at or above it is not written and comes back as `Err(existing person id)`.
    pub fn enrol(
        &self,
        collection: &str,
        items: Vec<Enrolment>,
        duplicate_min_closeness: Option<f32>,
    ) -> Result<Vec<Result<PersonRecord, String>>, StoreError> {
        self.enrol_items(collection, items, duplicate_min_closeness, false)
    }

    /// Write a new person, never replacing one: `Ok(None)` when the person id is enrolled
    /// already (checked under the writer lock, so no other enrolment slips in between).
    pub fn enrol_new(
        &self,
        collection: &str,
        item: Enrolment,
    ) -> Result<Option<PersonRecord>, StoreError> {
        let id = item.person_id.clone();
        let mut out = self.enrol_items(collection, vec![item], None, true)?;
        match out.remove(0) {
            Ok(person) => Ok(Some(person)),
            Err(existing) if existing == id => Ok(None),
            Err(_) => unreachable!("no duplicate check was asked for"),
        }
    }

    fn enrol_items(
        &self,
        collection: &str,
        items: Vec<Enrolment>,
        duplicate_min_closeness: Option<f32>,
        only_new: bool,
    ) -> Result<Vec<Result<PersonRecord, String>>, StoreError> {
        let _w = self.writer.lock().unwrap();
        if !self.indexes.read().unwrap().contains_key(collection) {
            return Err(StoreError::CollectionNotFound);
        }
        for item in &items {
            if item.faces.is_empty() {
                return Err(StoreError::NoFace);
            }
            if item.faces.len() as u32 > self.max_faces_per_person {
                return Err(StoreError::TooManyFaces {
                    max: self.max_faces_per_person,
                });
            }
        }
        let mut verdicts: Vec<Option<String>> = Vec::with_capacity(items.len());
        for item in &items {
            let mut verdict = None;
            if only_new {
                let txn = self.env.read_txn()?;
                if self
                    .persons
                    .get(&txn, &person_key(collection, &item.person_id))?
                    .is_some()
                {
                    verdicts.push(Some(item.person_id.clone()));
                    continue;
                }
            }
            if let Some(min) = duplicate_min_closeness {
                for face in &item.faces {
                    if let Some(m) =
                        self.best_other(collection, &face.template, min, &item.person_id)?
                    {
                        verdict = Some(m.person.person_id);
                        break;
                    }
                }
            }
            verdicts.push(verdict);
        }
        let now = self.clock.now_ms();
        // (person id, faces removed, faces written) for the index, in commit order.
        type IndexChange = (String, Vec<u32>, Vec<u32>);
        // Held from before the commit until the index matches it: a search never sees the
        // old faces' templates gone while the index still points at them.
        let mut indexes = self.indexes.write().unwrap();
        let (results, changes) = self.write(|txn| {
            let mut record = self
                .collections
                .get(txn, collection)?
                .ok_or(StoreError::CollectionNotFound)?;
            let mut results = Vec::with_capacity(items.len());
            let mut changes: Vec<IndexChange> = Vec::new();
            for (item, duplicate) in items.iter().zip(&verdicts) {
                if let Some(other) = duplicate {
                    results.push(Err(other.clone()));
                    continue;
                }
                let key = person_key(collection, &item.person_id);
                let previous = self.persons.get(txn, &key)?;
                if previous.is_none() {
                    record.num_persons += 1;
                }
                let removed: Vec<u32> = previous
                    .as_ref()
                    .map(|p| p.faces.iter().map(|f| f.face_id).collect())
                    .unwrap_or_default();
                self.delete_faces(txn, collection, &item.person_id)?;
                let first_id = self.take_face_ids(txn, item.faces.len() as u32)?;
                let faces: Vec<FaceRecord> = item
                    .faces
                    .iter()
                    .enumerate()
                    .map(|(i, f)| FaceRecord {
                        face_id: first_id + i as u32,
                        created_at_ms: now,
                        storage: f.storage,
                    })
                    .collect();
                for (face, new) in faces.iter().zip(&item.faces) {
                    self.put_face(txn, collection, &item.person_id, face.face_id, new)?;
                }
                let person = PersonRecord {
                    person_id: item.person_id.clone(),
                    person_name: item.person_name.clone(),
                    metadata: item.metadata.clone(),
                    created_at_ms: previous.as_ref().map_or(now, |p| p.created_at_ms),
                    updated_at_ms: now,
                    num_faces: faces.len() as u32,
                    storage: faces[0].storage,
                    faces,
                    access: item
                        .access
                        .clone()
                        .or_else(|| previous.as_ref().and_then(|p| p.access.clone())),
                };
                self.persons.put(txn, &key, &person)?;
                self.note_change(txn, collection, Some(&item.person_id), false)?;
                changes.push((
                    item.person_id.clone(),
                    removed,
                    person.faces.iter().map(|f| f.face_id).collect(),
                ));
                results.push(Ok(person));
            }
            self.collections.put(txn, collection, &record)?;
            Ok((results, changes))
        })?;
        if let Some(index) = indexes.get_mut(collection) {
            let mut written = items
                .iter()
                .zip(&results)
                .filter(|(_, r)| r.is_ok())
                .map(|(item, _)| item);
            for (person_id, removed, added) in &changes {
                for face in removed {
                    index.remove(person_id, *face);
                }
                let item = written.next().expect("one change per written item");
                for (face, new) in added.iter().zip(&item.faces) {
                    index.upsert(person_id, *face, &new.template);
                }
                index.note_faces(added.len() as u32);
            }
        }
        drop(indexes);
        self.changed();
        Ok(results)
    }

    /// Write one face's template and image.
    fn put_face(
        &self,
        txn: &mut RwTxn,
        collection: &str,
        person_id: &str,
        face_id: u32,
        face: &NewFace,
    ) -> Result<(), StoreError> {
        let key = face_key(collection, person_id, face_id);
        self.templates
            .put(txn, &key, &encode_template(&self.model.id, &face.template))?;
        match &face.image {
            Some(bytes) => self.images.put(txn, &key, bytes)?,
            None => {
                self.images.delete(txn, &key)?;
            }
        }
        Ok(())
    }

    /// The record under a person key, telling a missing collection from a missing person.
    fn person_record(
        &self,
        txn: &RoTxn<WithoutTls>,
        collection: &str,
        key: &[u8],
    ) -> Result<PersonRecord, StoreError> {
        if self.collections.get(txn, collection)?.is_none() {
            return Err(StoreError::CollectionNotFound);
        }
        self.persons
            .get(txn, key)?
            .ok_or(StoreError::PersonNotFound)
    }

    /// `n` new face ids, unique in the whole store: a client holding the id of a deleted
    /// face (even of a person deleted and enrolled again) never reaches a newer face with it.
    fn take_face_ids(&self, txn: &mut RwTxn, n: u32) -> Result<u32, StoreError> {
        let first = match self.meta.get(txn, "next_face_id")? {
            Some(v) => v
                .parse::<u32>()
                .map_err(|_| StoreError::Corrupt("meta next_face_id".into()))?,
            None => 1,
        };
        let next = first
            .checked_add(n)
            .ok_or_else(|| StoreError::Corrupt("face ids exhausted".into()))?;
        self.meta.put(txn, "next_face_id", &next.to_string())?;
        Ok(first)
    }

    /// Delete every face template and image of a person.
    fn delete_faces(
        &self,
        txn: &mut RwTxn,
        collection: &str,
        person_id: &str,
    ) -> Result<(), StoreError> {
        let prefix = person_faces_prefix(collection, person_id);
        let end = prefix_end(&prefix);
        let range = prefix_range(&prefix, &end);
        self.templates.delete_range(txn, &range)?;
        self.images.delete_range(txn, &range)?;
        Ok(())
    }

    /// Add a face to a person. With `same_person_min_closeness`, the face must be at least
    /// that close to every face the person has (checked in the write transaction, so a
    /// concurrent replacement of the person cannot slip past it; comparing with every face,
    /// not the nearest, stops a chain of faces drifting to somebody else). With
    /// `duplicate_min_closeness`, a face as close to another person is refused.
    pub fn add_face(
        &self,
        collection: &str,
        person_id: &str,
        face: NewFace,
        same_person_min_closeness: Option<f32>,
        duplicate_min_closeness: Option<f32>,
    ) -> Result<Result<AddedFace, FaceRefused>, StoreError> {
        let _w = self.writer.lock().unwrap();
        if !self.indexes.read().unwrap().contains_key(collection) {
            return Err(StoreError::CollectionNotFound);
        }
        if let Some(min) = duplicate_min_closeness {
            if let Some(m) = self.best_other(collection, &face.template, min, person_id)? {
                return Ok(Err(FaceRefused::Duplicate(m.person.person_id)));
            }
        }
        let key = person_key(collection, person_id);
        let now = self.clock.now_ms();
        let mut indexes = self.indexes.write().unwrap();
        let outcome = self.write(|txn| {
            let mut person = self.person_record(txn, collection, &key)?;
            if person.faces.len() as u32 >= self.max_faces_per_person {
                return Err(StoreError::TooManyFaces {
                    max: self.max_faces_per_person,
                });
            }
            let least = self.least_closeness_to_faces(txn, collection, &person, &face.template)?;
            if let Some(min) = same_person_min_closeness {
                // A person whose templates cannot be read is not vouched for: refused.
                if least.is_none_or(|c| c < min) {
                    return Ok(Err(FaceRefused::NotSamePerson {
                        least_closeness: least,
                    }));
                }
            }
            let added = FaceRecord {
                face_id: self.take_face_ids(txn, 1)?,
                created_at_ms: now,
                storage: face.storage,
            };
            self.put_face(txn, collection, person_id, added.face_id, &face)?;
            person.faces.push(added);
            person.num_faces = person.faces.len() as u32;
            person.updated_at_ms = now;
            self.persons.put(txn, &key, &person)?;
            self.note_change(txn, collection, Some(person_id), false)?;
            Ok(Ok(AddedFace {
                person,
                face: added,
                least_closeness: least,
            }))
        })?;
        if let (Ok(added), Some(index)) = (&outcome, indexes.get_mut(collection)) {
            index.upsert(person_id, added.face.face_id, &face.template);
            index.note_faces(added.person.num_faces);
        }
        drop(indexes);
        self.changed();
        Ok(outcome)
    }

    /// The closeness of `query` to the person's least alike face (`None`: no face of the
    /// person has a template of this model).
    fn least_closeness_to_faces(
        &self,
        txn: &RoTxn<WithoutTls>,
        collection: &str,
        person: &PersonRecord,
        query: &[f32],
    ) -> Result<Option<f32>, StoreError> {
        let metric = self.model.metric;
        let query_norm_sq: f32 = query.iter().map(|v| v * v).sum();
        let mut least: Option<f32> = None;
        for face in &person.faces {
            let key = face_key(collection, &person.person_id, face.face_id);
            let Some((_, values)) = self.templates.get(txn, &key)?.and_then(decode_template) else {
                return Ok(None);
            };
            if values.len() != query.len() {
                return Ok(None);
            }
            let closeness =
                index::closeness_of_key(metric, exact_key(metric, &values, query), query_norm_sq);
            least = Some(least.map_or(closeness, |l: f32| l.min(closeness)));
        }
        Ok(least)
    }

    /// Change a person's name, metadata or access rules (each `None` keeps the old one), their
    /// faces untouched.
    pub fn edit_person(
        &self,
        collection: &str,
        person_id: &str,
        edit: PersonEdit,
    ) -> Result<PersonRecord, StoreError> {
        let _w = self.writer.lock().unwrap();
        if !self.indexes.read().unwrap().contains_key(collection) {
            return Err(StoreError::CollectionNotFound);
        }
        let key = person_key(collection, person_id);
        let now = self.clock.now_ms();
        self.write(|txn| {
            let mut person = self.person_record(txn, collection, &key)?;
            // (Cloned: the write may be retried after growing the map.)
            if let Some(name) = &edit.person_name {
                person.person_name = name.clone();
            }
            if let Some(metadata) = &edit.metadata {
                person.metadata = metadata.clone();
            }
            if let Some(access) = &edit.access {
                person.access = Some(access.clone());
            }
            person.updated_at_ms = now;
            self.persons.put(txn, &key, &person)?;
            self.note_change(txn, collection, Some(person_id), false)?;
            Ok(person)
        })
        .inspect(|_| self.changed())
    }

    /// Delete one face of a person; the last one cannot be (delete the person instead).
    pub fn delete_face(
        &self,
        collection: &str,
        person_id: &str,
        face_id: u32,
    ) -> Result<PersonRecord, StoreError> {
        let _w = self.writer.lock().unwrap();
        let key = person_key(collection, person_id);
        let now = self.clock.now_ms();
        let mut indexes = self.indexes.write().unwrap();
        let person = self.write(|txn| {
            let mut person = self.person_record(txn, collection, &key)?;
            let at = person
                .faces
                .iter()
                .position(|f| f.face_id == face_id)
                .ok_or(StoreError::FaceNotFound)?;
            if person.faces.len() == 1 {
                return Err(StoreError::LastFace);
            }
            person.faces.remove(at);
            person.num_faces = person.faces.len() as u32;
            person.storage = person.faces[0].storage;
            person.updated_at_ms = now;
            let face = face_key(collection, person_id, face_id);
            self.templates.delete(txn, &face)?;
            self.images.delete(txn, &face)?;
            self.persons.put(txn, &key, &person)?;
            self.note_change(txn, collection, Some(person_id), false)?;
            Ok(person)
        })?;
        if let Some(index) = indexes.get_mut(collection) {
            index.remove(person_id, face_id);
        }
        drop(indexes);
        self.changed();
        Ok(person)
    }

    /// A person's faces with their stored images (as `images` allows).
    pub fn faces(
        &self,
        collection: &str,
        person_id: &str,
        images: Images,
    ) -> Result<(PersonRecord, Vec<StoredFace>), StoreError> {
        let key = person_key(collection, person_id);
        self.read(|txn| {
            let person = self.person_record(txn, collection, &key)?;
            let mut spent = 0;
            let mut out = Vec::with_capacity(person.faces.len());
            for face in &person.faces {
                let key = face_key(collection, person_id, face.face_id);
                let image = images.take(&mut spent, &self.images, txn, &key, face.storage)?;
                out.push((*face, image));
            }
            Ok((person, out))
        })
    }

    pub fn delete_person(&self, collection: &str, person_id: &str) -> Result<(), StoreError> {
        let _w = self.writer.lock().unwrap();
        let key = person_key(collection, person_id);
        let mut indexes = self.indexes.write().unwrap();
        let faces = self.write(|txn| {
            let mut record = self
                .collections
                .get(txn, collection)?
                .ok_or(StoreError::CollectionNotFound)?;
            let person = self
                .persons
                .get(txn, &key)?
                .ok_or(StoreError::PersonNotFound)?;
            self.persons.delete(txn, &key)?;
            self.delete_faces(txn, collection, person_id)?;
            record.num_persons = record.num_persons.saturating_sub(1);
            self.collections.put(txn, collection, &record)?;
            self.note_change(txn, collection, Some(person_id), true)?;
            Ok(person.faces)
        })?;
        if let Some(index) = indexes.get_mut(collection) {
            for face in faces {
                index.remove(person_id, face.face_id);
            }
        }
        drop(indexes);
        self.changed();
        Ok(())
    }

    /// A person and the stored image of the face they are shown with.
    pub fn person(&self, collection: &str, person_id: &str) -> Result<StoredPerson, StoreError> {
        let key = person_key(collection, person_id);
        self.read(|txn| {
            let person = self.person_record(txn, collection, &key)?;
            let image = match person.shown_face() {
                Some(face) => self
                    .images
                    .get(txn, &face_key(collection, person_id, face.face_id))?
                    .map(<[u8]>::to_vec),
                None => None,
            };
            Ok((person, image))
        })
    }

    /// Persons of a collection (with stored images), ordered by id.
    pub fn list_persons(
        &self,
        collection: &str,
        page: &Page,
        images: Images,
    ) -> Result<(usize, Vec<StoredPerson>), StoreError> {
        let prefix = collection_prefix(collection);
        let needle = page.search.to_lowercase();
        self.read(|txn| {
            if self.collections.get(txn, collection)?.is_none() {
                return Err(StoreError::CollectionNotFound);
            }
            let mut all = Vec::new();
            for entry in self.persons.prefix_iter(txn, &prefix)? {
                let (_, person) = entry?;
                if needle.is_empty()
                    || person.person_id.to_lowercase().contains(&needle)
                    || person.person_name.to_lowercase().contains(&needle)
                {
                    all.push(person);
                }
            }
            let (count, page) = paginate(all, page);
            let mut out = Vec::with_capacity(page.len());
            let mut spent = 0;
            for person in page {
                let image = match person.shown_face() {
                    Some(face) => {
                        let key = face_key(collection, &person.person_id, face.face_id);
                        images.take(&mut spent, &self.images, txn, &key, face.storage)?
                    }
                    None => None,
                };
                out.push((person, image));
            }
            Ok((count, out))
        })
    }

    /// The best `k` persons of a collection at or above `min_closeness`, best first; a
    /// person scores the best of their faces.
    pub fn search(
        &self,
        collection: &str,
        query: &[f32],
        k: usize,
        min_closeness: f32,
        images: Images,
    ) -> Result<(Vec<Match>, ScanStats), StoreError> {
        self.search_excluding(collection, query, k, min_closeness, None, images)
    }

    fn best_other(
        &self,
        collection: &str,
        query: &[f32],
        min_closeness: f32,
        except: &str,
    ) -> Result<Option<Match>, StoreError> {
        Ok(self
            .search_excluding(
                collection,
                query,
                1,
                min_closeness,
                Some(except),
                Images::NONE,
            )?
            .0
            .into_iter()
            .next())
    }

    fn search_excluding(
        &self,
        collection: &str,
        query: &[f32],
        k: usize,
        min_closeness: f32,
        except: Option<&str>,
        images: Images,
    ) -> Result<(Vec<Match>, ScanStats), StoreError> {
        let indexes = self.indexes.read().unwrap();
        let index = indexes
            .get(collection)
            .ok_or(StoreError::CollectionNotFound)?;
        let metric = self.model.metric;
        let query_norm_sq: f32 = query.iter().map(|v| v * v).sum();
        let min_key = index::key_of_closeness(metric, min_closeness, query_norm_sq);
        // Every person has at most `max_faces` templates, so the best `k · max_faces`
        // templates hold the best template of each of the best `k` persons (a person ranked
        // k-th has at most (k − 1) · max_faces templates above its best); one person more
        // when one is excluded.
        let want = (k + usize::from(except.is_some())).saturating_mul(index.max_faces() as usize);
        self.read(|txn| {
            let mut exact = |slot: u32| -> Option<f32> {
                let key = face_key(collection, index.id(slot), index.face(slot));
                let bytes = self.templates.get(txn, &key).ok()??;
                let (_, values) = decode_template(bytes)?;
                (values.len() == query.len()).then(|| exact_key(metric, &values, query))
            };
            let (hits, stats) = index.search(query, want, min_key, &mut exact);
            let mut matches = Vec::with_capacity(k.min(hits.len()));
            let mut seen = std::collections::HashSet::new();
            let mut spent = 0;
            for hit in hits {
                if matches.len() == k {
                    break;
                }
                let id = index.id(hit.slot);
                // Hits come best first: a person's first hit is their best face.
                if except == Some(id) || !seen.insert(id) {
                    continue;
                }
                let Some(person) = self.persons.get(txn, &person_key(collection, id))? else {
                    continue;
                };
                let mut found = Match {
                    person,
                    face_id: index.face(hit.slot),
                    image: None,
                    closeness: index::closeness_of_key(metric, hit.key, query_norm_sq),
                };
                let key = face_key(collection, id, found.face_id);
                found.image =
                    images.take(&mut spent, &self.images, txn, &key, found.face_storage())?;
                matches.push(found);
            }
            Ok((matches, stats))
        })
    }

    /// Number of collections and of persons in all of them.
    pub fn counts(&self) -> (usize, usize) {
        let counted = self.read(|txn| {
            let mut collections = 0;
            let mut persons = 0;
            for entry in self.collections.iter(txn)? {
                let (_, record) = entry?;
                collections += 1;
                persons += record.num_persons as usize;
            }
            Ok((collections, persons))
        });
        counted.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot count the store's persons");
            let indexes = self.indexes.read().unwrap();
            (indexes.len(), 0)
        })
    }

    /// Number of face templates in one collection: a search compares a probe with every
    /// one, so false accepts grow with this number.
    pub fn template_count(&self, collection: &str) -> Result<usize, StoreError> {
        self.indexes
            .read()
            .unwrap()
            .get(collection)
            .map(CollectionIndex::len)
            .ok_or(StoreError::CollectionNotFound)
    }

    /// Heap bytes of the search indexes.
    pub fn index_bytes(&self) -> usize {
        self.indexes
            .read()
            .unwrap()
            .values()
            .map(|i| i.heap_bytes())
            .sum()
    }

    /// Every (collection, person id) with a template, once per person, for consistency
    /// checks.
    pub fn template_keys(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.read(|txn| {
            let mut out: Vec<(String, String)> = Vec::new();
            for entry in self.templates.iter(txn)? {
                let (key, _) = entry?;
                if let Some((c, p, _)) = split_face_key(key) {
                    if out
                        .last()
                        .is_none_or(|(lc, lp)| (lc.as_str(), lp.as_str()) != (c, p))
                    {
                        out.push((c.to_owned(), p.to_owned()));
                    }
                }
            }
            Ok(out)
        })
    }

    /// Check that every face of every person has a template and every template a face of a
    /// person, and that the collection counts agree: what a crash must never break.
    pub fn verify(&self) -> Result<Vec<String>, StoreError> {
        self.read(|txn| {
            let mut problems = Vec::new();
            let mut counts: HashMap<String, u64> = HashMap::new();
            for entry in self.persons.iter(txn)? {
                let (key, person) = entry?;
                let (c, p) = split_person_key(key)
                    .ok_or_else(|| StoreError::Corrupt(String::from_utf8_lossy(key).into()))?;
                *counts.entry(c.to_owned()).or_default() += 1;
                if person.faces.is_empty() || person.num_faces as usize != person.faces.len() {
                    problems.push(format!(
                        "person {c}/{p} says {} faces, lists {}",
                        person.num_faces,
                        person.faces.len()
                    ));
                }
                for face in &person.faces {
                    if self
                        .templates
                        .get(txn, &face_key(c, p, face.face_id))?
                        .is_none()
                    {
                        problems.push(format!("face {} of {c}/{p} has no template", face.face_id));
                    }
                }
            }
            for entry in self.templates.iter(txn)? {
                let (key, _) = entry?;
                let listed = match split_face_key(key) {
                    Some((c, p, face)) => self
                        .persons
                        .get(txn, &person_key(c, p))?
                        .is_some_and(|person| person.faces.iter().any(|f| f.face_id == face)),
                    None => false,
                };
                if !listed {
                    problems.push(format!(
                        "template {} is no face of a person",
                        String::from_utf8_lossy(key)
                    ));
                }
            }
            for entry in self.collections.iter(txn)? {
                let (name, record) = entry?;
                let n = counts.remove(name).unwrap_or(0);
                if n != record.num_persons {
                    problems.push(format!(
                        "collection {name} says {} persons, holds {n}",
                        record.num_persons
                    ));
                }
            }
            for (name, _) in counts {
                problems.push(format!("persons of unknown collection {name}"));
            }
            Ok(problems)
        })
    }
}

/// Every key that starts with `prefix`, given [`prefix_end`] of it.
fn prefix_range<'a>(
    prefix: &'a [u8],
    end: &'a Option<Vec<u8>>,
) -> (Bound<&'a [u8]>, Bound<&'a [u8]>) {
    (
        Bound::Included(prefix),
        end.as_deref().map_or(Bound::Unbounded, Bound::Excluded),
    )
}

/// The first key after every key that starts with `prefix` (`None`: no such key).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

fn paginate<T>(mut all: Vec<T>, page: &Page) -> (usize, Vec<T>) {
    if page.descending {
        all.reverse();
    }
    let count = all.len();
    let items = all.into_iter().skip(page.skip).take(page.take).collect();
    (count, items)
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as usize
    } else {
        4096
    }
}
