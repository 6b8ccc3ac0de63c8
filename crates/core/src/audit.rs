//! The audit trail: every decision of the cameras, with the access message it produced, in an
//! LMDB event log of its own (`<data_dir>/events`), each record linked to the one before by a
//! SHA-256 hash chain, so that a record edited or deleted in place is detected
//! ([`EventLog::verify`] names the first bad one). Bounded by a record count and an age: the
//! oldest records are dropped and counted, and the hash of the last dropped one is kept as the
//! chain's anchor.
//!
//! A record is stored as its 32-byte hash followed by its JSON body; the hash is
//! SHA-256(previous record's hash ‖ body), the body names the previous hash too. The chain
//! detects changes by anyone who does not recompute every later hash; one who can rewrite the
//! whole file can rewrite the chain (docs/access.md, "Audit trail").

use std::path::Path;
use std::sync::Mutex;

use heed::byteorder::BigEndian;
use heed::types::{Bytes, Str, U64};
use heed::{CommitOrAbort, Database, EnvOpenOptions, WithoutTls};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot create the event log folder {path}: {source}")]
    Directory {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("event log database: {0}")]
    Lmdb(#[from] heed::Error),
    #[error("event log record {0} cannot be read: {1}")]
    Damaged(u64, String),
}

/// One decision as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Position in the log, from 1, never reused.
    pub index: u64,
    /// Hex SHA-256 of the previous record (of the anchor for the first one kept; zeros for the
    /// first ever).
    pub prev_hash: String,
    /// When it was written (RFC 3339).
    pub recorded_at: String,
    /// The decision's time (capture of the deciding frame), milliseconds since the epoch.
    pub at_ms: i64,
    pub event_id: String,
    /// Decision type: match, unknown, spoof, undetermined.
    #[serde(rename = "type")]
    pub kind: String,
    pub camera: String,
    pub door: Option<String>,
    pub person_id: Option<String>,
    /// Whether the door opened (null without a door).
    pub granted: Option<bool>,
    /// Hex SHA-256 of the thumbnail kept with it (so the chain covers the image too).
    pub thumbnail_sha256: Option<String>,
    /// Whether the messages reached the outbox for publishing (false: MQTT off, or the outbox
    /// write failed; the access message then was never sent).
    pub published: bool,
    /// The event message as published (without its thumbnail).
    pub event: serde_json::Value,
    /// The signed access message, when the camera guards a door.
    pub access: Option<serde_json::Value>,
}

impl AuditRecord {
    fn recorded_at_ms(&self) -> i64 {
        self.recorded_at
            .parse::<jiff::Timestamp>()
            .map_or(self.at_ms, |t| t.as_millisecond())
    }
}

/// What [`EventLog::query`] selects; every field is optional.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub camera: Option<String>,
    pub door: Option<String>,
    pub person_id: Option<String>,
    pub kind: Option<String>,
    pub granted: Option<bool>,
}

impl Filter {
    fn matches(&self, r: &AuditRecord) -> bool {
        self.since_ms.is_none_or(|t| r.at_ms >= t)
            && self.until_ms.is_none_or(|t| r.at_ms < t)
            && self.camera.as_ref().is_none_or(|c| &r.camera == c)
            && self
                .door
                .as_ref()
                .is_none_or(|d| r.door.as_ref() == Some(d))
            && self
                .person_id
                .as_ref()
                .is_none_or(|p| r.person_id.as_ref() == Some(p))
            && self.kind.as_ref().is_none_or(|k| &r.kind == k)
            && self.granted.is_none_or(|g| r.granted == Some(g))
    }
}

/// The outcome of [`EventLog::verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verified {
    /// Records checked.
    pub records: u64,
    pub first_index: Option<u64>,
    pub last_index: Option<u64>,
    /// Records dropped by the bounds over the log's life (before `first_index`).
    pub dropped: u64,
    /// Hex hash of the newest record: note it to detect a later rewrite of the whole log.
    pub head_hash: String,
}

/// The first record that breaks the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("record {index}: {why}")]
pub struct Broken {
    pub index: u64,
    pub why: String,
}

/// A record and its thumbnail (JPEG), if kept.
pub type RecordWithThumbnail = (AuditRecord, Option<Vec<u8>>);

type Records = Database<'static, U64<BigEndian>, Bytes>;
type ByEventId = Database<'static, Str, U64<BigEndian>>;
type Meta = Database<'static, Str, Bytes>;

/// An append whose clock reads this far past the newest record's does not age records out.
const MAX_CLOCK_JUMP_MS: i64 = 7 * 86_400_000;

/// One decision to record.
#[derive(Debug, Clone, Default)]
pub struct Entry {
    /// The event message as published.
    pub event: serde_json::Value,
    /// The signed access message, when the camera guards a door.
    pub access: Option<serde_json::Value>,
    /// The face thumbnail (JPEG).
    pub thumbnail: Option<Vec<u8>>,
    /// Whether the messages were committed to the outbox for publishing.
    pub published: bool,
}

const NEXT_INDEX: &str = "next_index";
const DROPPED: &str = "dropped";
/// Hash and index of the newest dropped record.
const ANCHOR: &str = "anchor";

pub struct EventLog {
    env: heed::Env<WithoutTls>,
    records: Records,
    thumbnails: Records,
    by_event_id: ByEventId,
    meta: Meta,
    writer: Mutex<()>,
    max_events: u64,
    max_age_ms: i64,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn chain_hash(prev: &[u8; 32], body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(body);
    h.finalize().into()
}

fn u64_meta(meta: &Meta, txn: &heed::RoTxn<WithoutTls>, key: &str) -> heed::Result<u64> {
    Ok(meta
        .get(txn, key)?
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0, u64::from_be_bytes))
}

impl EventLog {
    /// Open (or create) the log in `dir`, keeping at most `max_events` records of at most
    /// `max_age_days` days.
    pub fn open(
        dir: &Path,
        max_events: u64,
        max_age_days: u32,
        map_mib: usize,
    ) -> Result<Self, AuditError> {
        std::fs::create_dir_all(dir).map_err(|source| AuditError::Directory {
            path: dir.to_owned(),
            source,
        })?;
        let mut opts = EnvOpenOptions::new().read_txn_without_tls();
        opts.map_size(map_mib.max(1) << 20).max_dbs(4);
        // SAFETY: the folder belongs to this process (inside its data directory).
        let env = unsafe { opts.open(dir) }?;
        env.clear_stale_readers()?;
        let wtxn = env.write_txn()?;
        let (records, thumbnails, by_event_id, meta) = env
            .create_databases_and_commit(wtxn, |dbo, wtxn| -> heed::Result<_> {
                Ok(CommitOrAbort::<_, ()>::Commit((
                    dbo.create_database(wtxn, Some("records"))?,
                    dbo.create_database(wtxn, Some("thumbnails"))?,
                    dbo.create_database(wtxn, Some("by_event_id"))?,
                    dbo.create_database(wtxn, Some("meta"))?,
                )))
            })?
            .unwrap_commit();
        Ok(Self {
            env,
            records,
            thumbnails,
            by_event_id,
            meta,
            writer: Mutex::new(()),
            max_events: max_events.max(1),
            max_age_ms: i64::from(max_age_days) * 86_400_000,
        })
    }

    /// The hash the next record chains to, and the previous index (0: none yet).
    fn head(&self, txn: &heed::RoTxn<WithoutTls>) -> Result<([u8; 32], u64), AuditError> {
        if let Some(last) = self.records.last(txn)? {
            let (index, bytes) = last;
            let hash = bytes
                .get(..32)
                .and_then(|h| <[u8; 32]>::try_from(h).ok())
                .ok_or_else(|| AuditError::Damaged(index, "shorter than its hash".into()))?;
            return Ok((hash, index));
        }
        Ok(self.anchor(txn)?.unwrap_or(([0; 32], 0)))
    }

    fn anchor(&self, txn: &heed::RoTxn<WithoutTls>) -> Result<Option<([u8; 32], u64)>, AuditError> {
        Ok(self.meta.get(txn, ANCHOR)?.and_then(|b| {
            let hash = <[u8; 32]>::try_from(b.get(..32)?).ok()?;
            let index = u64::from_be_bytes(b.get(32..40)?.try_into().ok()?);
            Some((hash, index))
        }))
    }

    /// Append one decision (`event`: the event message; `access`: the access message) at
    /// `now_ms`; returns its index. Drops the oldest records past the bounds.
    pub fn append(&self, entry: &Entry, now_ms: i64) -> Result<u64, AuditError> {
        let _w = self.writer.lock().unwrap();
        loop {
            match self.try_append(entry, now_ms) {
                Err(AuditError::Lmdb(heed::Error::Mdb(heed::MdbError::MapFull))) => {
                    // Pages of deleted records are reused only after the deleting
                    // transaction commits: make room in a transaction of its own.
                    let txn = self.env.read_txn()?;
                    let count = self.records.len(&txn)?;
                    drop(txn);
                    if count == 0 {
                        return Err(AuditError::Damaged(
                            0,
                            "a record larger than events.map_mib".into(),
                        ));
                    }
                    let mut txn = self.env.write_txn()?;
                    self.drop_oldest(&mut txn, (count / 10).max(1), |_| true)?;
                    txn.commit()?;
                    tracing::warn!(
                        "event log map full (events.map_mib): the oldest records were dropped"
                    );
                }
                other => return other,
            }
        }
    }

    fn try_append(&self, entry: &Entry, now_ms: i64) -> Result<u64, AuditError> {
        let (event, thumbnail) = (&entry.event, entry.thumbnail.as_deref());
        let mut txn = self.env.write_txn()?;
        let (prev, _) = self.head(&txn)?;
        let newest_recorded_ms = match self.records.last(&txn)? {
            Some((index, bytes)) => Some(Self::decode(index, bytes)?.recorded_at_ms()),
            None => None,
        };
        let index = u64_meta(&self.meta, &txn, NEXT_INDEX)?.max(1);
        let text = |k: &str| event[k].as_str().map(str::to_owned);
        let mut event = event.clone();
        if let Some(o) = event.as_object_mut() {
            o.remove("thumbnail");
        }
        let at_ms = text("ts")
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .map_or(now_ms, |t| t.as_millisecond());
        let record = AuditRecord {
            index,
            prev_hash: hex(&prev),
            recorded_at: crate::clock::rfc3339(now_ms),
            at_ms,
            event_id: text("event_id").unwrap_or_default(),
            kind: text("type").unwrap_or_default(),
            camera: text("camera").unwrap_or_default(),
            door: text("door"),
            person_id: text("person_id"),
            granted: event["granted"].as_bool(),
            thumbnail_sha256: thumbnail.map(|t| hex(&Sha256::digest(t))),
            published: entry.published,
            event,
            access: entry.access.clone(),
        };
        let body =
            serde_json::to_vec(&record).map_err(|e| AuditError::Damaged(index, e.to_string()))?;
        let hash = chain_hash(&prev, &body);
        let mut stored = Vec::with_capacity(32 + body.len());
        stored.extend_from_slice(&hash);
        stored.extend_from_slice(&body);
        self.records.put(&mut txn, &index, &stored)?;
        if let Some(t) = thumbnail {
            self.thumbnails.put(&mut txn, &index, t)?;
        }
        if !record.event_id.is_empty() {
            self.by_event_id.put(&mut txn, &record.event_id, &index)?;
        }
        self.meta
            .put(&mut txn, NEXT_INDEX, &(index + 1).to_be_bytes())?;
        // A clock that jumped far ahead (a bad RTC, a spoofed time server) must not age out
        // the whole log in one append: the age bound waits until the clock has been seen
        // moving with the records (the count bound always applies).
        let clock_jumped = newest_recorded_ms.is_some_and(|t| now_ms - t > MAX_CLOCK_JUMP_MS);
        self.prune(&mut txn, if clock_jumped { None } else { Some(now_ms) })?;
        txn.commit()?;
        Ok(index)
    }

    /// Drop the oldest records past `max_events`, and those older than `max_age` at `now_ms`
    /// (none by age when `None`).
    fn prune(&self, txn: &mut heed::RwTxn, now_ms: Option<i64>) -> Result<(), AuditError> {
        let count = self.records.len(txn)?;
        let over = count.saturating_sub(self.max_events);
        let max_age_ms = self.max_age_ms;
        let too_old = |r: &AuditRecord| {
            max_age_ms > 0 && now_ms.is_some_and(|now| r.at_ms < now - max_age_ms)
        };
        self.drop_oldest(txn, u64::MAX, |(n, r): (u64, Option<&AuditRecord>)| {
            n < over || r.is_some_and(too_old)
        })
    }

    /// Drop up to `limit` of the oldest records while `drop((position, record))` says so,
    /// keeping the hash of the newest dropped one as the anchor and counting them.
    fn drop_oldest(
        &self,
        txn: &mut heed::RwTxn,
        limit: u64,
        drop: impl Fn((u64, Option<&AuditRecord>)) -> bool,
    ) -> Result<(), AuditError> {
        let mut dropped = 0u64;
        let mut anchor: Option<([u8; 32], u64)> = None;
        while dropped < limit {
            let Some((index, bytes)) = self.records.first(txn)? else {
                break;
            };
            let record: Option<AuditRecord> =
                serde_json::from_slice(bytes.get(32..).unwrap_or(&[])).ok();
            if !drop((dropped, record.as_ref())) {
                break;
            }
            let hash = <[u8; 32]>::try_from(bytes.get(..32).unwrap_or(&[0; 32])).unwrap_or([0; 32]);
            if let Some(r) = &record {
                if self.by_event_id.get(txn, &r.event_id)? == Some(index) {
                    self.by_event_id.delete(txn, &r.event_id)?;
                }
            }
            self.records.delete(txn, &index)?;
            self.thumbnails.delete(txn, &index)?;
            anchor = Some((hash, index));
            dropped += 1;
        }
        if let Some((hash, index)) = anchor {
            let mut a = hash.to_vec();
            a.extend_from_slice(&index.to_be_bytes());
            self.meta.put(txn, ANCHOR, &a)?;
            let total = u64_meta(&self.meta, txn, DROPPED)? + dropped;
            self.meta.put(txn, DROPPED, &total.to_be_bytes())?;
        }
        Ok(())
    }

    /// Records dropped by the bounds over the log's life.
    pub fn dropped_total(&self) -> Result<u64, AuditError> {
        let txn = self.env.read_txn()?;
        Ok(u64_meta(&self.meta, &txn, DROPPED)?)
    }

    /// Check the whole chain: consecutive indexes from the anchor on, each record's stored
    /// hash equal to SHA-256(previous hash ‖ body), each body naming the previous hash.
    pub fn verify(&self) -> Result<Result<Verified, Broken>, AuditError> {
        let txn = self.env.read_txn()?;
        let (mut prev, mut prev_index) = self.anchor(&txn)?.unwrap_or(([0; 32], 0));
        let dropped = u64_meta(&self.meta, &txn, DROPPED)?;
        // Indexes run from 1 and only the oldest are dropped: the anchor is the dropped count.
        if prev_index != dropped {
            return Ok(Err(Broken {
                index: prev_index + 1,
                why: format!(
                    "the log starts after record {prev_index} but {dropped} were dropped by its \
                     bounds (records deleted from its start)"
                ),
            }));
        }
        let mut records = 0;
        let mut first_index = None;
        for item in self.records.iter(&txn)? {
            let (index, bytes) = item?;
            let broken = |why: String| Ok(Err(Broken { index, why }));
            if index != prev_index + 1 {
                return Ok(Err(Broken {
                    index: prev_index + 1,
                    why: format!(
                        "missing: the record after {prev_index} is {index} (deleted records)"
                    ),
                }));
            }
            let Some((stored, body)) = bytes.split_first_chunk::<32>() else {
                return broken("shorter than its hash".into());
            };
            let record: AuditRecord = match serde_json::from_slice(body) {
                Ok(r) => r,
                Err(e) => return broken(format!("its body is not a record ({e})")),
            };
            if record.index != index {
                return broken(format!("its body says index {}", record.index));
            }
            if record.prev_hash != hex(&prev) {
                return broken("it does not name the previous record's hash".into());
            }
            if chain_hash(&prev, body) != *stored {
                return broken("its hash does not match its content (edited)".into());
            }
            let thumbnail = self.thumbnails.get(&txn, &index)?;
            if record.thumbnail_sha256 != thumbnail.map(|t| hex(&Sha256::digest(t))) {
                return broken(
                    "its thumbnail is not the one recorded (replaced or removed)".into(),
                );
            }
            first_index.get_or_insert(index);
            prev = *stored;
            prev_index = index;
            records += 1;
        }
        let next = u64_meta(&self.meta, &txn, NEXT_INDEX)?.max(1);
        if next != prev_index + 1 {
            return Ok(Err(Broken {
                index: prev_index + 1,
                why: format!(
                    "missing: records up to {} were written but the log ends at {prev_index} \
                     (records deleted from its end)",
                    next - 1
                ),
            }));
        }
        Ok(Ok(Verified {
            records,
            first_index,
            last_index: (records > 0).then_some(prev_index),
            dropped,
            head_hash: hex(&prev),
        }))
    }

    fn decode(index: u64, bytes: &[u8]) -> Result<AuditRecord, AuditError> {
        serde_json::from_slice(bytes.get(32..).unwrap_or(&[]))
            .map_err(|e| AuditError::Damaged(index, e.to_string()))
    }

    /// Up to `limit` records matching `filter`, newest first, older than index `before`
    /// (the cursor: the last index of the previous page). Returns them and the next cursor
    /// (`None` at the end).
    pub fn query(
        &self,
        filter: &Filter,
        limit: usize,
        before: Option<u64>,
    ) -> Result<(Vec<AuditRecord>, Option<u64>), AuditError> {
        let txn = self.env.read_txn()?;
        let end = before.unwrap_or(u64::MAX);
        let mut out = Vec::new();
        for item in self.records.rev_range(&txn, &(..end))? {
            let (index, bytes) = item?;
            let r = Self::decode(index, bytes)?;
            if filter.matches(&r) {
                if out.len() == limit {
                    let cursor = out.last().map(|r: &AuditRecord| r.index);
                    return Ok((out, cursor));
                }
                out.push(r);
            }
        }
        Ok((out, None))
    }

    /// The record of `event_id` and its thumbnail.
    pub fn get(&self, event_id: &str) -> Result<Option<RecordWithThumbnail>, AuditError> {
        let txn = self.env.read_txn()?;
        let Some(index) = self.by_event_id.get(&txn, event_id)? else {
            return Ok(None);
        };
        let Some(bytes) = self.records.get(&txn, &index)? else {
            return Ok(None);
        };
        let r = Self::decode(index, bytes)?;
        if r.event_id != event_id {
            return Err(AuditError::Damaged(
                index,
                format!("the event-id index points at the record of {}", r.event_id),
            ));
        }
        let thumb = self.thumbnails.get(&txn, &index)?.map(<[u8]>::to_vec);
        Ok(Some((r, thumb)))
    }

    /// Replace record `index`'s thumbnail: for tests of tamper detection only.
    #[doc(hidden)]
    pub fn tamper_thumbnail(&self, index: u64, jpeg: &[u8]) -> Result<(), AuditError> {
        let mut txn = self.env.write_txn()?;
        self.thumbnails.put(&mut txn, &index, jpeg)?;
        txn.commit()?;
        Ok(())
    }

    /// Overwrite record `index`'s stored bytes: for tests of tamper detection only.
    #[doc(hidden)]
    pub fn tamper(&self, index: u64, edit: impl FnOnce(&mut Vec<u8>)) -> Result<(), AuditError> {
        let mut txn = self.env.write_txn()?;
        match self.records.get(&txn, &index)?.map(<[u8]>::to_vec) {
            Some(mut bytes) => {
                edit(&mut bytes);
                if bytes.is_empty() {
                    self.records.delete(&mut txn, &index)?;
                } else {
                    self.records.put(&mut txn, &index, &bytes)?;
                }
            }
            None => return Err(AuditError::Damaged(index, "no such record".into())),
        }
        txn.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;
    const T0: i64 = 1_800_000_000_000;

    fn event(n: u64, at_ms: i64, person: Option<&str>, granted: Option<bool>) -> serde_json::Value {
        serde_json::json!({
            "event_id": format!("e{n}"), "sequence": n, "type": if person.is_some() { "match" } else { "unknown" },
            "ts": crate::clock::rfc3339(at_ms), "camera": "front", "door": "main",
            "person_id": person, "granted": granted, "thumbnail": "dropped from the log",
        })
    }

    fn entry(event: serde_json::Value, thumbnail: Option<&[u8]>) -> Entry {
        Entry {
            event,
            access: None,
            thumbnail: thumbnail.map(<[u8]>::to_vec),
            published: true,
        }
    }

    fn log(dir: &Path, max: u64, days: u32) -> EventLog {
        EventLog::open(dir, max, days, 16).unwrap()
    }

    fn filled(dir: &Path, n: u64) -> EventLog {
        let l = log(dir, 100, 0);
        for i in 1..=n {
            let e = event(i, T0 + i as i64, Some("alice"), Some(true));
            l.append(&entry(e, Some(b"jpeg")), T0).unwrap();
        }
        l
    }

    #[test]
    fn an_intact_log_verifies_and_an_edited_record_or_thumbnail_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let l = filled(dir.path(), 5);
        let ok = l.verify().unwrap().unwrap();
        assert_eq!(
            (ok.records, ok.first_index, ok.last_index),
            (5, Some(1), Some(5))
        );
        // An edit that keeps the JSON valid: "alice" becomes "mallo".
        l.tamper(3, |b| {
            let at = b.windows(5).position(|w| w == b"alice").unwrap();
            b[at..at + 5].copy_from_slice(b"mallo");
        })
        .unwrap();
        let bad = l.verify().unwrap().unwrap_err();
        assert_eq!(bad.index, 3, "{bad}");
        assert!(bad.why.contains("edited"), "{bad}");

        let dir = tempfile::tempdir().unwrap();
        let l = filled(dir.path(), 5);
        l.tamper_thumbnail(2, b"another face").unwrap();
        let bad = l.verify().unwrap().unwrap_err();
        assert_eq!(bad.index, 2, "{bad}");
        assert!(bad.why.contains("thumbnail"), "{bad}");
    }

    #[test]
    fn records_deleted_from_the_middle_the_start_or_the_end_are_named() {
        for (deleted, named) in [(vec![4], 4), (vec![1, 2], 1), (vec![5], 5), (vec![4, 5], 4)] {
            let dir = tempfile::tempdir().unwrap();
            let l = filled(dir.path(), 5);
            for index in &deleted {
                l.tamper(*index, Vec::clear).unwrap();
            }
            let bad = l.verify().unwrap().unwrap_err();
            assert_eq!(bad.index, named, "deleting {deleted:?}: {bad}");
        }
    }

    #[test]
    fn the_bounds_drop_the_oldest_records_count_them_and_the_chain_still_verifies() {
        let dir = tempfile::tempdir().unwrap();
        {
            let l = log(dir.path(), 3, 30);
            for n in 1..=5 {
                l.append(&entry(event(n, T0, None, None), Some(b"jpeg")), T0)
                    .unwrap();
            }
            assert_eq!(l.dropped_total().unwrap(), 2);
            let ok = l.verify().unwrap().unwrap();
            assert_eq!((ok.records, ok.first_index, ok.dropped), (3, Some(3), 2));
            assert!(l.get("e1").unwrap().is_none(), "dropped with its thumbnail");
        }
        // The clock jumps 31 days ahead at once: the age bound waits (a bad clock must not
        // wipe the log) ...
        let l = log(dir.path(), 3, 30);
        let later = T0 + 31 * DAY;
        l.append(&entry(event(6, later, None, None), None), later)
            .unwrap();
        assert_eq!(l.verify().unwrap().unwrap().first_index, Some(4));
        // ... and applies once the clock moves on with the records.
        l.append(
            &entry(event(7, later + 1000, None, None), None),
            later + 1000,
        )
        .unwrap();
        let ok = l.verify().unwrap().unwrap();
        assert_eq!((ok.records, ok.first_index, ok.dropped), (2, Some(6), 5));
    }

    #[test]
    fn queries_run_newest_first_with_filters_and_cursor_pages() {
        let dir = tempfile::tempdir().unwrap();
        let l = log(dir.path(), 100, 0);
        for n in 1..=10u64 {
            let person = (n % 2 == 0).then_some("alice");
            let e = event(n, T0 + n as i64 * 1000, person, Some(person.is_some()));
            l.append(&entry(e, None), T0).unwrap();
        }
        let (page, cursor) = l.query(&Filter::default(), 4, None).unwrap();
        assert_eq!(
            page.iter().map(|r| r.index).collect::<Vec<_>>(),
            [10, 9, 8, 7]
        );
        let (page, cursor) = l.query(&Filter::default(), 4, cursor).unwrap();
        assert_eq!(
            page.iter().map(|r| r.index).collect::<Vec<_>>(),
            [6, 5, 4, 3]
        );
        let (page, cursor) = l.query(&Filter::default(), 4, cursor).unwrap();
        assert_eq!(page.iter().map(|r| r.index).collect::<Vec<_>>(), [2, 1]);
        assert_eq!(cursor, None);
        let alice = Filter {
            person_id: Some("alice".into()),
            since_ms: Some(T0 + 4000),
            until_ms: Some(T0 + 9000),
            ..Filter::default()
        };
        let (page, _) = l.query(&alice, 10, None).unwrap();
        assert_eq!(page.iter().map(|r| r.index).collect::<Vec<_>>(), [8, 6, 4]);
        let refused = Filter {
            granted: Some(false),
            kind: Some("unknown".into()),
            ..Filter::default()
        };
        assert_eq!(l.query(&refused, 100, None).unwrap().0.len(), 5);
        let (r, thumb) = l.get("e7").unwrap().unwrap();
        assert_eq!((r.index, thumb), (7, None));
        assert!(r.event.get("thumbnail").is_none());
    }
}
