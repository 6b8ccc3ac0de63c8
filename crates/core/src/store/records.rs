//! What the store keeps, and how keys and templates are laid out in LMDB.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Version of the on-disk layout; a store written by a later version is refused, one written
/// by version 1 (one face per person, templates keyed by person) is migrated on open.
pub const SCHEMA_VERSION: u32 = 2;

/// How a template is encoded: version byte, model-id length, model id, then `f32` LE values.
const TEMPLATE_FORMAT: u8 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CollectionRecord {
    pub name: String,
    pub num_persons: u64,
    pub created_at_ms: i64,
}

/// What is kept of the enrolment photo (`face_storage_type`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub enum FaceStorage {
    /// Nothing but the template.
    NoStorage,
    /// The aligned face crop as a JPEG.
    #[default]
    StoreThumbnails,
    /// The posted image bytes as they came.
    StoreFullImage,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PersonRecord {
    pub person_id: String,
    pub person_name: String,
    pub metadata: BTreeMap<String, String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub num_faces: u32,
    /// How the first face's image is kept (the image a person is shown with).
    pub storage: FaceStorage,
    /// The person's faces, oldest first. Empty only in a version-1 record before migration.
    #[serde(default)]
    pub faces: Vec<FaceRecord>,
    /// Who may pass which door when (none: every door, any time the door's schedule allows).
    /// Absent in records written before access rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<crate::access::rules::PersonAccess>,
}

impl PersonRecord {
    /// The face a person is shown with (listings, `GET /person`): the first one.
    pub fn shown_face(&self) -> Option<&FaceRecord> {
        self.faces.first()
    }
}

/// One enrolled face of a person: its template is under [`face_key`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct FaceRecord {
    pub face_id: u32,
    pub created_at_ms: i64,
    pub storage: FaceStorage,
}

/// Ends a person id inside a face key. Never part of a person id: ids are UTF-8, and 0xFF
/// never occurs in UTF-8.
const FACE_MARK: u8 = 0xFF;

/// The key of one face's template and image: the person key, [`FACE_MARK`], the face id
/// (big-endian, so a person's faces sort by id). All faces of a person share
/// [`person_faces_prefix`], and all of a collection's its [`collection_prefix`].
pub fn face_key(collection: &str, person_id: &str, face_id: u32) -> Vec<u8> {
    let mut key = person_faces_prefix(collection, person_id);
    key.extend_from_slice(&face_id.to_be_bytes());
    key
}

pub fn person_faces_prefix(collection: &str, person_id: &str) -> Vec<u8> {
    let mut key = person_key(collection, person_id);
    key.push(FACE_MARK);
    key
}

/// Split a face key into collection, person id and face id; `None` for anything else
/// (including a version-1 template key, which has no face id).
pub fn split_face_key(key: &[u8]) -> Option<(&str, &str, u32)> {
    let (person, face) = key.split_at_checked(key.len().checked_sub(5)?)?;
    let (&mark, id) = face.split_first()?;
    if mark != FACE_MARK {
        return None;
    }
    let (c, p) = split_person_key(person)?;
    Some((c, p, u32::from_be_bytes(id.try_into().ok()?)))
}

/// The key of everything stored per person: collection-name length (one byte; names are at
/// most 64 bytes), the name, then the person id. All keys of a collection share a prefix, so
/// deleting or listing a collection is one range.
pub fn person_key(collection: &str, person_id: &str) -> Vec<u8> {
    let mut key = collection_prefix(collection);
    key.extend_from_slice(person_id.as_bytes());
    key
}

pub fn collection_prefix(collection: &str) -> Vec<u8> {
    debug_assert!(collection.len() <= u8::MAX as usize);
    let mut key = Vec::with_capacity(1 + collection.len() + 16);
    key.push(collection.len() as u8);
    key.extend_from_slice(collection.as_bytes());
    key
}

/// Split a person key into collection and person id.
pub fn split_person_key(key: &[u8]) -> Option<(&str, &str)> {
    let (&len, rest) = key.split_first()?;
    let len = len as usize;
    if rest.len() < len {
        return None;
    }
    let (c, p) = rest.split_at(len);
    Some((std::str::from_utf8(c).ok()?, std::str::from_utf8(p).ok()?))
}

pub fn encode_template(model: &str, values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + model.len() + 4 * values.len());
    out.push(TEMPLATE_FORMAT);
    out.push(model.len() as u8);
    out.extend_from_slice(model.as_bytes());
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// The model id and the values of an encoded template.
pub fn decode_template(bytes: &[u8]) -> Option<(&str, Vec<f32>)> {
    let (model, values) = template_parts(bytes)?;
    Some((
        model,
        values
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect(),
    ))
}

/// The model id and the raw little-endian values, without copying.
pub fn template_parts(bytes: &[u8]) -> Option<(&str, &[u8])> {
    if bytes.len() < 2 || bytes[0] != TEMPLATE_FORMAT {
        return None;
    }
    let len = bytes[1] as usize;
    let model = std::str::from_utf8(bytes.get(2..2 + len)?).ok()?;
    let values = &bytes[2 + len..];
    values.len().is_multiple_of(4).then_some((model, values))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn person_keys_round_trip_and_share_the_collection_prefix() {
        let k = person_key("staff", "p\u{0}1");
        assert!(k.starts_with(&collection_prefix("staff")));
        assert_eq!(split_person_key(&k), Some(("staff", "p\u{0}1")));
        // "staff" and "staff2" must not share a prefix, or deleting one would touch the other.
        assert!(!person_key("staff2", "x").starts_with(&collection_prefix("staff")));
    }

    #[test]
    fn face_keys_round_trip_and_share_the_person_prefix() {
        let k = face_key("staff", "p1", 0xFF_01);
        assert_eq!(split_face_key(&k), Some(("staff", "p1", 0xFF_01)));
        assert!(k.starts_with(&person_faces_prefix("staff", "p1")));
        // Another person whose id starts with this one's is not under its prefix.
        assert!(!face_key("staff", "p10", 1).starts_with(&person_faces_prefix("staff", "p1")));
        // A version-1 template key (the person key alone) is not a face key.
        assert_eq!(split_face_key(&person_key("staff", "p1")), None);
        assert_eq!(split_face_key(&person_key("staff", "longer-id")), None);
    }

    #[test]
    fn templates_round_trip_with_their_model_id() {
        let t = encode_template("arcface512@abc", &[0.5, -1.25]);
        assert_eq!(
            decode_template(&t),
            Some(("arcface512@abc", vec![0.5, -1.25]))
        );
        assert_eq!(decode_template(&[9, 0]), None);
    }
}
