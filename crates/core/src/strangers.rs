//! Strangers: faces decided `unknown` clustered online into persistent anonymous identities,
//! `unknown-<n>`, in an LMDB store of their own (`<data_dir>/strangers`). A new unknown face
//! joins the stranger one of whose kept faces it scores best against, at or above the camera's
//! match threshold, or becomes a new stranger. Each stranger keeps its best faces (template and
//! thumbnail, by quality) and counts its sightings; an ignored one is still recognised (so it
//! is never reported again) but not announced. Bounded by a count (the one seen longest ago is
//! forgotten) and an age; an ignored stranger is an operator's decision and is never forgotten
//! by either bound (only `remove` drops it). The templates are those of one embedding model:
//! opened for another, the store starts empty.
//!
//! The templates of every stranger are held in memory for matching (at most
//! `max_count × faces_kept` of them); records with thumbnails are read from LMDB on demand.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use heed::byteorder::BigEndian;
use heed::types::{Bytes, Str, U64};
use heed::{CommitOrAbort, Database, EnvOpenOptions, WithoutTls};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum StrangerError {
    #[error("cannot create the strangers folder {path}: {source}")]
    Directory {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("strangers database: {0}")]
    Lmdb(#[from] heed::Error),
    #[error("stranger record {0} cannot be read: {1}")]
    Damaged(u64, String),
}

/// The text of a stranger's id.
pub fn id_text(id: u64) -> String {
    format!("unknown-{id}")
}

/// The number of an `unknown-<n>` id.
pub fn parse_id(text: &str) -> Option<u64> {
    text.strip_prefix("unknown-")?
        .parse()
        .ok()
        .filter(|n| *n > 0)
}

/// One kept face of a stranger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StrangerFace {
    /// The track's quality score for this face (higher is better).
    pub quality: f32,
    pub seen_ms: i64,
    pub camera: String,
    /// The track's fused template.
    pub template: Vec<f32>,
    /// JPEG of the aligned face, base64 in the record.
    #[serde(
        with = "base64_bytes",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub thumbnail: Option<Vec<u8>>,
}

/// One stranger as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stranger {
    pub id: u64,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub sightings: u64,
    /// Never reported again (`POST /unknowns/{id}/ignore`).
    pub ignored: bool,
    pub last_camera: String,
    /// Best first.
    pub faces: Vec<StrangerFace>,
}

/// A face decided `unknown`, to place.
#[derive(Debug, Clone)]
pub struct Sighting {
    pub template: Vec<f32>,
    pub quality: f32,
    pub thumbnail: Option<Vec<u8>>,
    pub camera: String,
    pub now_ms: i64,
}

/// Where a sighting went.
#[derive(Debug, Clone, PartialEq)]
pub struct Placed {
    pub id: u64,
    pub sightings: u64,
    pub ignored: bool,
    /// A stranger first seen now.
    pub new: bool,
    /// The score against the stranger's closest kept face (none for a new one).
    pub score: Option<f32>,
}

/// What [`Strangers::reserve`] found.
#[derive(Debug)]
pub enum Reservation {
    Got(Stranger),
    /// Another enrolment has it.
    Busy,
    Missing,
}

/// Bounds of the store.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_count: u64,
    /// 0: no age limit.
    pub max_age_ms: i64,
    pub faces_kept: usize,
}

/// What is held in memory of one stranger: enough to match and to bound.
#[derive(Debug, Clone)]
struct Cluster {
    id: u64,
    last_seen_ms: i64,
    ignored: bool,
    templates: Vec<Vec<f32>>,
}

impl Cluster {
    fn of(s: &Stranger) -> Self {
        Self {
            id: s.id,
            last_seen_ms: s.last_seen_ms,
            ignored: s.ignored,
            templates: s.faces.iter().map(|f| f.template.clone()).collect(),
        }
    }
}

/// The stranger whose closest kept face scores best against `template`, if at or above
/// `min_score` (`score` maps two templates to the calibrated score).
fn nearest_of(
    clusters: &[&Cluster],
    template: &[f32],
    score: &dyn Fn(&[f32], &[f32]) -> f32,
    min_score: f32,
) -> Option<(u64, f32)> {
    clusters
        .iter()
        .filter_map(|c| {
            c.templates
                .iter()
                .filter(|t| t.len() == template.len())
                .map(|t| score(t, template))
                .fold(None, |best: Option<f32>, s| {
                    Some(best.map_or(s, |b| b.max(s)))
                })
                .map(|s| (c.id, s))
        })
        .filter(|(_, s)| *s >= min_score)
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

/// Add `face` to `faces` (best first), keeping the `kept` best by quality.
fn keep_best(faces: &mut Vec<StrangerFace>, face: StrangerFace, kept: usize) {
    let at = faces
        .iter()
        .position(|f| face.quality > f.quality)
        .unwrap_or(faces.len());
    faces.insert(at, face);
    faces.truncate(kept.max(1));
}

type Records = Database<'static, U64<BigEndian>, Bytes>;
type Meta = Database<'static, Str, Bytes>;
/// The last id given (ids are never reused, so an old event's id never names a new stranger).
const LAST_ID: &str = "last_id";
/// The embedding model the templates belong to.
const MODEL: &str = "model";

pub struct Strangers {
    env: heed::Env<WithoutTls>,
    records: Records,
    meta: Meta,
    /// Every stranger's templates; the lock also serialises writers.
    clusters: Mutex<Vec<Cluster>>,
    /// `clusters.len()`, readable without the lock.
    count: AtomicUsize,
    /// Strangers being enrolled (reserved).
    enrolling: Mutex<std::collections::HashSet<u64>>,
    limits: Limits,
}

impl Strangers {
    /// Open (or create) the store in `dir` for templates of `model` (an embedder's
    /// fingerprint): strangers kept for another model are dropped, since their templates cannot
    /// be compared with this one's.
    pub fn open(
        dir: &Path,
        limits: Limits,
        map_mib: usize,
        model: &str,
    ) -> Result<Self, StrangerError> {
        std::fs::create_dir_all(dir).map_err(|source| StrangerError::Directory {
            path: dir.to_owned(),
            source,
        })?;
        let mut opts = EnvOpenOptions::new().read_txn_without_tls();
        opts.map_size(map_mib.max(1) << 20).max_dbs(2);
        // SAFETY: the folder belongs to this process (inside its data directory).
        let env = unsafe { opts.open(dir) }?;
        env.clear_stale_readers()?;
        let wtxn = env.write_txn()?;
        let (records, meta) = env
            .create_databases_and_commit(wtxn, |dbo, wtxn| -> heed::Result<_> {
                Ok(CommitOrAbort::<_, ()>::Commit((
                    dbo.create_database(wtxn, Some("records"))?,
                    dbo.create_database(wtxn, Some("meta"))?,
                )))
            })?
            .unwrap_commit();
        {
            let mut wtxn = env.write_txn()?;
            if meta.get(&wtxn, MODEL)? != Some(model.as_bytes()) {
                let dropped = records.len(&wtxn)?;
                if dropped > 0 {
                    tracing::warn!(
                        dropped,
                        model,
                        "strangers of another embedding model dropped"
                    );
                }
                records.clear(&mut wtxn)?;
                meta.put(&mut wtxn, MODEL, model.as_bytes())?;
            }
            wtxn.commit()?;
        }
        let mut clusters = Vec::new();
        {
            let txn = env.read_txn()?;
            for item in records.iter(&txn)? {
                let (id, bytes) = item?;
                clusters.push(Cluster::of(&decode(id, bytes)?));
            }
        }
        Ok(Self {
            env,
            records,
            meta,
            count: AtomicUsize::new(clusters.len()),
            enrolling: Mutex::default(),
            clusters: Mutex::new(clusters),
            limits,
        })
    }

    /// The strangers the bounds drop at `now_ms` among `kept` (id, last seen, ignored):
    /// those unseen for longer than the age limit, then past the count the ones seen longest
    /// ago; never an ignored one nor `keep`.
    fn due(&self, kept: &[(u64, i64, bool)], now_ms: i64, keep: Option<u64>) -> Vec<u64> {
        let mut candidates: Vec<(i64, u64)> = kept
            .iter()
            .filter(|(id, _, ignored)| !ignored && Some(*id) != keep)
            .map(|(id, seen, _)| (*seen, *id))
            .collect();
        candidates.sort_unstable();
        let oldest =
            (self.limits.max_age_ms > 0).then(|| now_ms.saturating_sub(self.limits.max_age_ms));
        let aged = candidates
            .iter()
            .take_while(|(seen, _)| oldest.is_some_and(|o| *seen < o))
            .count();
        let over = kept
            .len()
            .saturating_sub(aged)
            .saturating_sub(self.limits.max_count.max(1) as usize);
        candidates
            .iter()
            .take(aged + over.min(candidates.len() - aged))
            .map(|(_, id)| *id)
            .collect()
    }

    fn view(clusters: &[Cluster]) -> Vec<(u64, i64, bool)> {
        clusters
            .iter()
            .map(|c| (c.id, c.last_seen_ms, c.ignored))
            .collect()
    }

    /// Drop what the bounds say is due at `now_ms` (also done with every sighting; call it
    /// before listing so that a quiet appliance does not show strangers past their age).
    pub fn forget_due(&self, now_ms: i64) -> Result<usize, StrangerError> {
        let mut clusters = self.clusters.lock().unwrap();
        let due = self.due(&Self::view(&clusters), now_ms, None);
        if due.is_empty() {
            return Ok(0);
        }
        let mut wtxn = self.env.write_txn()?;
        for id in &due {
            self.records.delete(&mut wtxn, id)?;
        }
        wtxn.commit()?;
        clusters.retain(|c| !due.contains(&c.id));
        self.count.store(clusters.len(), Ordering::Relaxed);
        Ok(due.len())
    }

    /// Place an unknown face: the stranger it is, or a new one. Strangers past the bounds are
    /// forgotten in the same transaction.
    pub fn sight(
        &self,
        sighting: Sighting,
        score: &dyn Fn(&[f32], &[f32]) -> f32,
        min_score: f32,
    ) -> Result<Placed, StrangerError> {
        let mut clusters = self.clusters.lock().unwrap();
        let now = sighting.now_ms;
        // Those past their age go before matching, so that a face never joins a stranger that
        // is about to be forgotten.
        let aged: Vec<u64> = if self.limits.max_age_ms > 0 {
            let oldest = now.saturating_sub(self.limits.max_age_ms);
            clusters
                .iter()
                .filter(|c| !c.ignored && c.last_seen_ms < oldest)
                .map(|c| c.id)
                .collect()
        } else {
            Vec::new()
        };
        let live: Vec<&Cluster> = clusters.iter().filter(|c| !aged.contains(&c.id)).collect();
        let found = nearest_of(&live, &sighting.template, score, min_score);
        let mut wtxn = self.env.write_txn()?;
        let face = StrangerFace {
            quality: sighting.quality,
            seen_ms: now,
            camera: sighting.camera.clone(),
            template: sighting.template,
            thumbnail: sighting.thumbnail,
        };
        let (record, placed) = match found {
            Some((id, s)) => {
                let mut record = self
                    .records
                    .get(&wtxn, &id)?
                    .map(|b| decode(id, b))
                    .transpose()?
                    .ok_or_else(|| StrangerError::Damaged(id, "missing".into()))?;
                record.sightings += 1;
                record.last_seen_ms = record.last_seen_ms.max(now);
                record.last_camera = sighting.camera;
                keep_best(&mut record.faces, face, self.limits.faces_kept);
                let placed = Placed {
                    id,
                    sightings: record.sightings,
                    ignored: record.ignored,
                    new: false,
                    score: Some(s),
                };
                (record, placed)
            }
            None => {
                let id = self
                    .meta
                    .get(&wtxn, LAST_ID)?
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map_or(0, u64::from_be_bytes)
                    + 1;
                self.meta.put(&mut wtxn, LAST_ID, &id.to_be_bytes())?;
                let record = Stranger {
                    id,
                    first_seen_ms: now,
                    last_seen_ms: now,
                    sightings: 1,
                    ignored: false,
                    last_camera: sighting.camera,
                    faces: vec![face],
                };
                let placed = Placed {
                    id,
                    sightings: 1,
                    ignored: false,
                    new: true,
                    score: None,
                };
                (record, placed)
            }
        };
        self.records.put(&mut wtxn, &record.id, &encode(&record))?;
        // What the bounds drop of the strangers as they will be after the commit (ids and
        // times only: no template is copied).
        let mut view: Vec<(u64, i64, bool)> = Self::view(&clusters)
            .into_iter()
            .filter(|(id, _, _)| !aged.contains(id) && *id != record.id)
            .collect();
        view.push((record.id, record.last_seen_ms, record.ignored));
        let mut forgotten = aged;
        forgotten.extend(self.due(&view, now, Some(placed.id)));
        for id in &forgotten {
            self.records.delete(&mut wtxn, id)?;
        }
        // On a failed commit nothing was written and the clusters stay as they were.
        wtxn.commit()?;
        let updated = Cluster::of(&record);
        match clusters.iter_mut().find(|c| c.id == updated.id) {
            Some(c) => *c = updated,
            None => clusters.push(updated),
        }
        clusters.retain(|c| !forgotten.contains(&c.id));
        self.count.store(clusters.len(), Ordering::Relaxed);
        Ok(placed)
    }

    /// Strangers newest first (by id), at most `limit`, below `before` (a previous page's
    /// cursor); with the cursor of the next page.
    pub fn list(
        &self,
        limit: usize,
        before: Option<u64>,
    ) -> Result<(Vec<Stranger>, Option<u64>), StrangerError> {
        let txn = self.env.read_txn()?;
        let mut out = Vec::new();
        for item in self
            .records
            .rev_range(&txn, &(..before.unwrap_or(u64::MAX)))?
        {
            let (id, bytes) = item?;
            if out.len() == limit {
                let cursor = out.last().map(|s: &Stranger| s.id);
                return Ok((out, cursor));
            }
            out.push(decode(id, bytes)?);
        }
        Ok((out, None))
    }

    pub fn get(&self, id: u64) -> Result<Option<Stranger>, StrangerError> {
        let txn = self.env.read_txn()?;
        self.records
            .get(&txn, &id)?
            .map(|b| decode(id, b))
            .transpose()
    }

    /// Mark a stranger ignored; false when there is none of this id.
    pub fn ignore(&self, id: u64) -> Result<bool, StrangerError> {
        let mut clusters = self.clusters.lock().unwrap();
        let mut wtxn = self.env.write_txn()?;
        let Some(mut record) = self
            .records
            .get(&wtxn, &id)?
            .map(|b| decode(id, b))
            .transpose()?
        else {
            return Ok(false);
        };
        record.ignored = true;
        self.records.put(&mut wtxn, &id, &encode(&record))?;
        wtxn.commit()?;
        if let Some(c) = clusters.iter_mut().find(|c| c.id == id) {
            c.ignored = true;
        }
        Ok(true)
    }

    /// Forget a stranger; false when there is none of this id.
    pub fn remove(&self, id: u64) -> Result<bool, StrangerError> {
        let mut clusters = self.clusters.lock().unwrap();
        let mut wtxn = self.env.write_txn()?;
        let existed = self.records.delete(&mut wtxn, &id)?;
        wtxn.commit()?;
        clusters.retain(|c| c.id != id);
        self.count.store(clusters.len(), Ordering::Relaxed);
        Ok(existed)
    }

    /// The stranger, reserved for an enrolment: a second reservation of it gets `Reserved`
    /// until [`Self::release`]; meanwhile it stays in the store and is still matched (a face
    /// seen during the enrolment keeps its id). Remove it once the person is written.
    pub fn reserve(&self, id: u64) -> Result<Reservation, StrangerError> {
        let mut enrolling = self.enrolling.lock().unwrap();
        if enrolling.contains(&id) {
            return Ok(Reservation::Busy);
        }
        match self.get(id)? {
            Some(stranger) => {
                enrolling.insert(id);
                Ok(Reservation::Got(stranger))
            }
            None => Ok(Reservation::Missing),
        }
    }

    /// End a reservation of [`Self::reserve`].
    pub fn release(&self, id: u64) {
        self.enrolling.lock().unwrap().remove(&id);
    }

    /// How many strangers are kept.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }
}

fn encode(s: &Stranger) -> Vec<u8> {
    serde_json::to_vec(s).expect("a stranger record serialises")
}

fn decode(id: u64, bytes: &[u8]) -> Result<Stranger, StrangerError> {
    serde_json::from_slice(bytes).map_err(|e| StrangerError::Damaged(id, e.to_string()))
}

mod base64_bytes {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(b) => s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|t| {
            base64::engine::general_purpose::STANDARD
                .decode(t)
                .map_err(serde::de::Error::custom)
        })
        .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cosine of unit vectors as the score.
    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    fn unit(angle_deg: f32) -> Vec<f32> {
        let r = angle_deg.to_radians();
        vec![r.cos(), r.sin(), 0.0]
    }

    fn sighting(template: Vec<f32>, quality: f32, now_ms: i64) -> Sighting {
        Sighting {
            template,
            quality,
            thumbnail: Some(vec![0xFF, 0xD8, quality as u8]),
            camera: "front".into(),
            now_ms,
        }
    }

    fn limits(max_count: u64) -> Limits {
        Limits {
            max_count,
            max_age_ms: 30 * 86_400_000,
            faces_kept: 3,
        }
    }

    const DAY: i64 = 86_400_000;
    const T0: i64 = 1_800_000_000_000;

    #[test]
    fn the_same_face_again_is_the_same_stranger_and_counts_a_sighting() {
        let dir = tempfile::tempdir().unwrap();
        let s = Strangers::open(dir.path(), limits(10), 8, "m").unwrap();
        let a = s.sight(sighting(unit(0.0), 1.0, T0), &cosine, 0.9).unwrap();
        assert!(a.new);
        assert_eq!((a.id, a.sightings), (1, 1));
        let again = s
            .sight(sighting(unit(10.0), 2.0, T0 + 1000), &cosine, 0.9)
            .unwrap();
        assert_eq!((again.id, again.sightings, again.new), (1, 2, false));
        let other = s
            .sight(sighting(unit(90.0), 1.0, T0 + 2000), &cosine, 0.9)
            .unwrap();
        assert_eq!((other.id, other.new), (2, true));
        let stored = s.get(1).unwrap().unwrap();
        assert_eq!(stored.sightings, 2);
        assert_eq!(stored.faces.len(), 2);
        assert_eq!(stored.faces[0].quality, 2.0, "best face first");
        assert_eq!(
            stored.faces[0].thumbnail.as_deref(),
            Some(&[0xFF, 0xD8, 2][..])
        );
    }

    #[test]
    fn a_face_joins_the_closest_stranger_not_the_first_above_the_threshold() {
        let dir = tempfile::tempdir().unwrap();
        let s = Strangers::open(dir.path(), limits(10), 8, "m").unwrap();
        s.sight(sighting(unit(0.0), 1.0, T0), &cosine, 0.99)
            .unwrap();
        s.sight(sighting(unit(20.0), 1.0, T0), &cosine, 0.99)
            .unwrap();
        let placed = s
            .sight(sighting(unit(15.0), 1.0, T0), &cosine, 0.9)
            .unwrap();
        assert_eq!(placed.id, 2);
    }

    #[test]
    fn strangers_and_their_ids_survive_a_restart_and_ids_are_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Strangers::open(dir.path(), limits(10), 8, "m").unwrap();
            s.sight(sighting(unit(0.0), 1.0, T0), &cosine, 0.9).unwrap();
            s.sight(sighting(unit(90.0), 1.0, T0), &cosine, 0.9)
                .unwrap();
            assert!(s.remove(2).unwrap());
        }
        let s = Strangers::open(dir.path(), limits(10), 8, "m").unwrap();
        assert_eq!(s.count(), 1);
        let back = s
            .sight(sighting(unit(5.0), 1.0, T0 + 1), &cosine, 0.9)
            .unwrap();
        assert_eq!((back.id, back.sightings), (1, 2));
        let new = s
            .sight(sighting(unit(90.0), 1.0, T0 + 2), &cosine, 0.9)
            .unwrap();
        assert_eq!(new.id, 3, "id 2 was given once and is not given again");
    }

    #[test]
    fn only_the_best_faces_are_kept() {
        let mut faces = Vec::new();
        for q in [1.0, 5.0, 3.0, 4.0, 2.0] {
            keep_best(
                &mut faces,
                StrangerFace {
                    quality: q,
                    seen_ms: 0,
                    camera: String::new(),
                    template: vec![],
                    thumbnail: None,
                },
                3,
            );
        }
        let q: Vec<f32> = faces.iter().map(|f| f.quality).collect();
        assert_eq!(q, [5.0, 4.0, 3.0]);
    }

    #[test]
    fn past_the_count_the_stranger_seen_longest_ago_is_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let s = Strangers::open(dir.path(), limits(2), 8, "m").unwrap();
        s.sight(sighting(unit(0.0), 1.0, T0), &cosine, 0.9).unwrap();
        s.sight(sighting(unit(60.0), 1.0, T0 + 10), &cosine, 0.9)
            .unwrap();
        // Stranger 1 comes back: stranger 2 is now the one seen longest ago.
        s.sight(sighting(unit(1.0), 1.0, T0 + 20), &cosine, 0.9)
            .unwrap();
        s.sight(sighting(unit(120.0), 1.0, T0 + 30), &cosine, 0.9)
            .unwrap();
        let (all, _) = s.list(10, None).unwrap();
        let ids: Vec<u64> = all.iter().map(|s| s.id).collect();
        assert_eq!(ids, [3, 1]);
        assert_eq!(s.count(), 2);
    }

    #[test]
    fn a_stranger_not_seen_for_max_age_is_forgotten_and_not_matched() {
        let dir = tempfile::tempdir().unwrap();
        let s = Strangers::open(dir.path(), limits(10), 8, "m").unwrap();
        s.sight(sighting(unit(0.0), 1.0, T0), &cosine, 0.9).unwrap();
        let later = s
            .sight(sighting(unit(0.0), 1.0, T0 + 31 * DAY), &cosine, 0.9)
            .unwrap();
        assert!(later.new, "the old stranger was forgotten first");
        assert_eq!(later.id, 2);
        assert!(s.get(1).unwrap().is_none());
    }

    #[test]
    fn an_ignored_stranger_is_still_recognised_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let s = Strangers::open(dir.path(), limits(10), 8, "m").unwrap();
        s.sight(sighting(unit(0.0), 1.0, T0), &cosine, 0.9).unwrap();
        assert!(s.ignore(1).unwrap());
        assert!(!s.ignore(9).unwrap());
        let again = s
            .sight(sighting(unit(3.0), 1.0, T0 + 5), &cosine, 0.9)
            .unwrap();
        assert_eq!((again.id, again.ignored), (1, true));
    }

    #[test]
    fn an_ignored_stranger_is_never_forgotten_by_the_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let s = Strangers::open(dir.path(), limits(2), 8, "m").unwrap();
        s.sight(sighting(unit(0.0), 1.0, T0), &cosine, 0.9).unwrap();
        assert!(s.ignore(1).unwrap());
        for (i, a) in [60.0, 120.0, 180.0].into_iter().enumerate() {
            s.sight(sighting(unit(a), 1.0, T0 + 1 + i as i64), &cosine, 0.9)
                .unwrap();
        }
        // Past the count: the oldest that is not ignored went.
        let ids: Vec<u64> = s.list(10, None).unwrap().0.iter().map(|s| s.id).collect();
        assert_eq!(ids, [4, 1]);
        // Past the age: the ignored one stays, and is still recognised as ignored.
        assert_eq!(s.forget_due(T0 + 60 * DAY).unwrap(), 1);
        let back = s
            .sight(sighting(unit(2.0), 1.0, T0 + 90 * DAY), &cosine, 0.9)
            .unwrap();
        assert_eq!((back.id, back.ignored), (1, true));
        assert!(s.get(4).unwrap().is_none(), "aged out");
    }

    #[test]
    fn the_age_limit_is_applied_without_a_new_sighting() {
        let dir = tempfile::tempdir().unwrap();
        let s = Strangers::open(dir.path(), limits(10), 8, "m").unwrap();
        s.sight(sighting(unit(0.0), 1.0, T0), &cosine, 0.9).unwrap();
        assert_eq!(s.forget_due(T0 + DAY).unwrap(), 0);
        assert_eq!(s.forget_due(T0 + 31 * DAY).unwrap(), 1);
        assert_eq!((s.count(), s.list(10, None).unwrap().0.len()), (0, 0));
    }

    #[test]
    fn a_stranger_reserved_for_enrolment_is_reserved_once_and_still_matched() {
        let dir = tempfile::tempdir().unwrap();
        let s = Strangers::open(dir.path(), limits(10), 8, "m").unwrap();
        s.sight(sighting(unit(0.0), 1.0, T0), &cosine, 0.9).unwrap();
        assert!(matches!(s.reserve(1).unwrap(), Reservation::Got(x) if x.id == 1));
        assert!(
            matches!(s.reserve(1).unwrap(), Reservation::Busy),
            "a second enrolment waits"
        );
        assert!(matches!(s.reserve(7).unwrap(), Reservation::Missing));
        let during = s
            .sight(sighting(unit(1.0), 1.0, T0 + 1), &cosine, 0.9)
            .unwrap();
        assert_eq!(
            (during.id, during.sightings),
            (1, 2),
            "no new stranger while enrolling"
        );
        s.release(1);
        assert!(matches!(s.reserve(1).unwrap(), Reservation::Got(_)));
        assert!(s.remove(1).unwrap());
        s.release(1);
        assert!(matches!(s.reserve(1).unwrap(), Reservation::Missing));
    }

    #[test]
    fn strangers_of_another_model_are_dropped_at_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Strangers::open(dir.path(), limits(10), 8, "m").unwrap();
            s.sight(sighting(unit(0.0), 1.0, T0), &cosine, 0.9).unwrap();
        }
        assert_eq!(
            Strangers::open(dir.path(), limits(10), 8, "m")
                .unwrap()
                .count(),
            1
        );
        let other = Strangers::open(dir.path(), limits(10), 8, "other").unwrap();
        assert_eq!(
            (other.count(), other.list(10, None).unwrap().0.len()),
            (0, 0)
        );
    }

    #[test]
    fn listing_pages_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let s = Strangers::open(dir.path(), limits(10), 8, "m").unwrap();
        for (i, a) in [0.0, 60.0, 120.0].into_iter().enumerate() {
            s.sight(sighting(unit(a), 1.0, T0 + i as i64), &cosine, 0.9)
                .unwrap();
        }
        let (page, cursor) = s.list(2, None).unwrap();
        assert_eq!(page.iter().map(|s| s.id).collect::<Vec<_>>(), [3, 2]);
        let (rest, end) = s.list(2, cursor).unwrap();
        assert_eq!(rest.iter().map(|s| s.id).collect::<Vec<_>>(), [1]);
        assert_eq!(end, None);
    }

    #[test]
    fn ids_parse_only_in_their_own_form() {
        assert_eq!(parse_id("unknown-12"), Some(12));
        assert_eq!(id_text(12), "unknown-12");
        for bad in [
            "unknown-0",
            "unknown-",
            "unknown-x",
            "12",
            "Unknown-1",
            "unknown--1",
        ] {
            assert_eq!(parse_id(bad), None, "{bad}");
        }
    }
}
