//! The durable outbox: every message is committed to LMDB (fsync) before it is published and
//! removed only when the broker acknowledges it (PUBACK), so events survive broker outages and
//! daemon restarts and go out in order. It is bounded: past `max_messages` the oldest are
//! dropped and counted.

use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use heed::byteorder::BigEndian;
use heed::types::{Bytes, Str, U64};
use heed::{CommitOrAbort, Database, EnvOpenOptions, MdbError, WithoutTls};

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("cannot create the outbox folder {path}: {source}")]
    Directory {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("outbox database: {0}")]
    Lmdb(#[from] heed::Error),
    #[error("a message of {0} bytes cannot fit in the outbox map (mqtt.outbox_map_mib)")]
    TooBig(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

impl OutboxMessage {
    fn encode(&self) -> Vec<u8> {
        let topic = self.topic.as_bytes();
        let mut out = Vec::with_capacity(3 + topic.len() + self.payload.len());
        out.push(u8::from(self.retain));
        out.extend_from_slice(&(topic.len() as u16).to_be_bytes());
        out.extend_from_slice(topic);
        out.extend_from_slice(&self.payload);
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let retain = *bytes.first()? != 0;
        let len = u16::from_be_bytes([*bytes.get(1)?, *bytes.get(2)?]) as usize;
        let topic = std::str::from_utf8(bytes.get(3..3 + len)?).ok()?.to_owned();
        Some(Self {
            topic,
            payload: bytes[3 + len..].to_vec(),
            retain,
        })
    }
}

/// What an append did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// Outbox keys of the messages, in order.
    pub keys: Vec<u64>,
    /// The event sequence number handed to the builder.
    pub event_seq: u64,
    /// Old messages dropped to make room.
    pub dropped: u64,
}

type Messages = Database<'static, U64<BigEndian>, Bytes>;
type Meta = Database<'static, Str, U64<BigEndian>>;

pub struct Outbox {
    env: heed::Env<WithoutTls>,
    messages: Messages,
    meta: Meta,
    writer: Mutex<()>,
    max_messages: usize,
    depth: AtomicUsize,
    dropped: AtomicU64,
    dead_letters: AtomicU64,
}

const NEXT_KEY: &str = "next_key";
const EVENT_SEQ: &str = "event_seq";
const DROPPED: &str = "dropped";
const DEAD_LETTERS: &str = "dead_letters";

impl Outbox {
    pub fn open(dir: &Path, max_messages: usize, map_mib: usize) -> Result<Self, OutboxError> {
        std::fs::create_dir_all(dir).map_err(|source| OutboxError::Directory {
            path: dir.to_owned(),
            source,
        })?;
        let mut opts = EnvOpenOptions::new().read_txn_without_tls();
        opts.map_size(map_mib.max(1) << 20).max_dbs(2);
        // SAFETY: the outbox folder belongs to this process (inside its data directory).
        let env = unsafe { opts.open(dir) }?;
        env.clear_stale_readers()?;
        let wtxn = env.write_txn()?;
        let (messages, meta): (Messages, Meta) = env
            .create_databases_and_commit(wtxn, |dbo, wtxn| -> heed::Result<_> {
                Ok(CommitOrAbort::<_, ()>::Commit((
                    dbo.create_database(wtxn, Some("messages"))?,
                    dbo.create_database(wtxn, Some("meta"))?,
                )))
            })?
            .unwrap_commit();
        let (depth, dropped, dead_letters) = {
            let rtxn = env.read_txn()?;
            (
                messages.len(&rtxn)? as usize,
                meta.get(&rtxn, DROPPED)?.unwrap_or(0),
                meta.get(&rtxn, DEAD_LETTERS)?.unwrap_or(0),
            )
        };
        Ok(Self {
            env,
            messages,
            meta,
            writer: Mutex::new(()),
            max_messages: max_messages.max(1),
            depth: AtomicUsize::new(depth),
            dropped: AtomicU64::new(dropped),
            dead_letters: AtomicU64::new(dead_letters),
        })
    }

    /// Messages waiting for the broker's acknowledgement.
    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    /// Messages dropped because the outbox was full, over the outbox's life.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Messages set aside because they could not be delivered (see [`Outbox::dead_letter`]),
    /// over the outbox's life.
    pub fn dead_letters_total(&self) -> u64 {
        self.dead_letters.load(Ordering::Relaxed)
    }

    /// Set aside a message that can never be delivered (larger than the packet limit, or one
    /// the broker drops the connection on every time it is sent), so that the messages behind
    /// it are not blocked forever. It is removed and counted; the log names it.
    pub fn dead_letter(&self, key: u64, why: &str) -> Result<bool, OutboxError> {
        let _w = self.writer.lock().unwrap();
        let mut txn = self.env.write_txn()?;
        let Some(bytes) = self.messages.get(&txn, &key)? else {
            return Ok(false);
        };
        let (topic, size) = match OutboxMessage::decode(bytes) {
            Some(m) => (m.topic, m.payload.len()),
            None => (String::from("?"), bytes.len()),
        };
        self.messages.delete(&mut txn, &key)?;
        let total = self.meta.get(&txn, DEAD_LETTERS)?.unwrap_or(0) + 1;
        self.meta.put(&mut txn, DEAD_LETTERS, &total)?;
        let depth = self.messages.len(&txn)? as usize;
        txn.commit()?;
        self.depth.store(depth, Ordering::Relaxed);
        self.dead_letters.store(total, Ordering::Relaxed);
        tracing::error!(key, topic = %topic, payload_bytes = size, why, "outbox message set aside as a dead letter");
        Ok(true)
    }

    /// Commit the messages `build` makes from the next event sequence number, in one
    /// transaction. Returns once they are on disk.
    pub fn append(
        &self,
        build: impl FnOnce(u64) -> Vec<OutboxMessage>,
    ) -> Result<Appended, OutboxError> {
        let _w = self.writer.lock().unwrap();
        let event_seq = {
            let rtxn = self.env.read_txn()?;
            self.meta.get(&rtxn, EVENT_SEQ)?.unwrap_or(0) + 1
        };
        let encoded: Vec<Vec<u8>> = build(event_seq).iter().map(OutboxMessage::encode).collect();
        loop {
            match self.try_append(&encoded, event_seq) {
                Err(OutboxError::Lmdb(heed::Error::Mdb(MdbError::MapFull))) => {
                    // LMDB reuses the pages of deleted messages only after the deleting
                    // transaction commits, so make room in a transaction of its own.
                    let depth = self.depth();
                    if depth == 0 {
                        return Err(OutboxError::TooBig(encoded.iter().map(Vec::len).sum()));
                    }
                    self.drop_oldest((depth / 10).max(1))?;
                }
                other => return other,
            }
        }
    }

    /// Delete the `n` oldest messages (to make room), counting them as dropped.
    fn drop_oldest(&self, n: usize) -> Result<(), OutboxError> {
        let mut txn = self.env.write_txn()?;
        let dropped = self.delete_oldest(&mut txn, n)?;
        self.commit_counting(txn, dropped)?;
        tracing::warn!(
            dropped,
            "outbox map full: the oldest unsent messages were dropped"
        );
        Ok(())
    }

    /// Add `dropped` to the persistent drop count, commit, and refresh the in-memory depth and
    /// drop count from what was committed.
    fn commit_counting(&self, mut txn: heed::RwTxn, dropped: u64) -> Result<(), OutboxError> {
        let dropped_total = self.meta.get(&txn, DROPPED)?.unwrap_or(0) + dropped;
        self.meta.put(&mut txn, DROPPED, &dropped_total)?;
        let depth = self.messages.len(&txn)? as usize;
        txn.commit()?;
        self.depth.store(depth, Ordering::Relaxed);
        self.dropped.store(dropped_total, Ordering::Relaxed);
        Ok(())
    }

    /// Delete up to `n` of the oldest messages in `txn`; returns how many.
    fn delete_oldest(&self, txn: &mut heed::RwTxn, n: usize) -> Result<u64, OutboxError> {
        let oldest: Vec<u64> = self
            .messages
            .iter(txn)?
            .take(n)
            .map(|r| r.map(|(k, _)| k))
            .collect::<Result<_, _>>()?;
        for k in &oldest {
            self.messages.delete(txn, k)?;
        }
        Ok(oldest.len() as u64)
    }

    fn try_append(&self, encoded: &[Vec<u8>], event_seq: u64) -> Result<Appended, OutboxError> {
        let mut txn = self.env.write_txn()?;
        let mut next = self.meta.get(&txn, NEXT_KEY)?.unwrap_or(1);
        let len = self.messages.len(&txn)? as usize;
        let over = (len + encoded.len()).saturating_sub(self.max_messages);
        let to_drop = over.min(len);
        let dropped = self.delete_oldest(&mut txn, to_drop)?;
        let mut keys = Vec::with_capacity(encoded.len());
        for bytes in encoded {
            self.messages.put(&mut txn, &next, bytes)?;
            keys.push(next);
            next += 1;
        }
        self.meta.put(&mut txn, NEXT_KEY, &next)?;
        self.meta.put(&mut txn, EVENT_SEQ, &event_seq)?;
        self.commit_counting(txn, dropped)?;
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "outbox full: the oldest unsent messages were dropped"
            );
        }
        Ok(Appended {
            keys,
            event_seq,
            dropped,
        })
    }

    /// Up to `limit` messages after key `after` (from the oldest when `None`), in order.
    pub fn next_after(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, OutboxMessage)>, OutboxError> {
        let rtxn = self.env.read_txn()?;
        let start = after.map_or(0, |k| k + 1);
        let mut out = Vec::new();
        for item in self.messages.range(&rtxn, &(start..))?.take(limit) {
            let (k, v) = item?;
            if let Some(m) = OutboxMessage::decode(v) {
                out.push((k, m));
            }
        }
        Ok(out)
    }

    /// The broker has the message: forget it.
    pub fn remove(&self, key: u64) -> Result<bool, OutboxError> {
        let _w = self.writer.lock().unwrap();
        let mut txn = self.env.write_txn()?;
        let removed = self.messages.delete(&mut txn, &key)?;
        let depth = self.messages.len(&txn)? as usize;
        txn.commit()?;
        self.depth.store(depth, Ordering::Relaxed);
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(n: u64) -> OutboxMessage {
        OutboxMessage {
            topic: format!("t/{n}"),
            payload: format!("{{\"n\":{n}}}").into_bytes(),
            retain: n.is_multiple_of(2),
        }
    }

    #[test]
    fn messages_survive_reopening_in_order_until_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        {
            let outbox = Outbox::open(dir.path(), 100, 8).unwrap();
            for n in 0..3 {
                let a = outbox.append(|seq| vec![msg(seq)]).unwrap();
                assert_eq!(a.event_seq, n + 1);
            }
            let all = outbox.next_after(None, 10).unwrap();
            outbox.remove(all[0].0).unwrap();
        }
        let outbox = Outbox::open(dir.path(), 100, 8).unwrap();
        assert_eq!(outbox.depth(), 2);
        let left: Vec<OutboxMessage> = outbox
            .next_after(None, 10)
            .unwrap()
            .into_iter()
            .map(|(_, m)| m)
            .collect();
        assert_eq!(left, vec![msg(2), msg(3)]);
        // Sequence numbers go on after a restart.
        assert_eq!(outbox.append(|seq| vec![msg(seq)]).unwrap().event_seq, 4);
    }

    #[test]
    fn a_full_outbox_drops_its_oldest_messages_and_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path(), 3, 8).unwrap();
        for _ in 0..5 {
            outbox.append(|seq| vec![msg(seq)]).unwrap();
        }
        assert_eq!(outbox.depth(), 3);
        assert_eq!(outbox.dropped_total(), 2);
        let topics: Vec<String> = outbox
            .next_after(None, 10)
            .unwrap()
            .into_iter()
            .map(|(_, m)| m.topic)
            .collect();
        assert_eq!(topics, vec!["t/3", "t/4", "t/5"]);
    }

    #[test]
    fn a_dead_letter_leaves_the_queue_and_is_counted_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        {
            let outbox = Outbox::open(dir.path(), 10, 8).unwrap();
            let a = outbox.append(|_| vec![msg(1), msg(2)]).unwrap();
            assert!(outbox.dead_letter(a.keys[0], "test").unwrap());
            assert!(!outbox.dead_letter(a.keys[0], "again").unwrap());
            assert_eq!(outbox.dead_letters_total(), 1);
        }
        let outbox = Outbox::open(dir.path(), 10, 8).unwrap();
        assert_eq!(outbox.dead_letters_total(), 1);
        let left = outbox.next_after(None, 10).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].1, msg(2));
    }

    #[test]
    fn reading_after_a_key_continues_from_the_next_message() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path(), 10, 8).unwrap();
        let a = outbox.append(|_| vec![msg(1), msg(2), msg(3)]).unwrap();
        let after = outbox.next_after(Some(a.keys[0]), 1).unwrap();
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].1, msg(2));
    }

    #[test]
    fn when_the_map_is_full_old_messages_make_room_for_new_ones() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path(), 1_000_000, 1).unwrap();
        let big = |seq: u64| OutboxMessage {
            topic: format!("t/{seq}"),
            payload: vec![7; 100_000],
            retain: false,
        };
        for _ in 0..30 {
            outbox.append(|seq| vec![big(seq)]).unwrap();
        }
        assert!(outbox.dropped_total() > 0);
        let last = outbox.next_after(None, 1000).unwrap().pop().unwrap();
        assert_eq!(last.1.topic, "t/30");
    }
}
