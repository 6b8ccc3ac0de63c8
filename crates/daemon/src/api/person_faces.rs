//! A person's faces [facegate]: list, add, delete (`/person/{collection}/{id}/faces`).
//!
//! A person is matched by the best of their faces, so each face added is another way in:
//! a face that does not resemble the person's other faces is refused unless the client says
//! otherwise, and a face matching another person can be refused as a duplicate.

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody, ErrorCode};
use super::extract::{check_collection_name, check_person_id, check_score, encode_base64, ApiJson};
use super::faces::analyse;
use super::persons::{closeness_for_score, new_face, score_of_closeness, wanted_for};
use super::SharedState;
use facegate_core::clock::rfc3339;
use facegate_core::store::{FaceRecord, FaceStorage};

/// Default of `min_similarity_to_person`: a false-match rate of 1e-3 per comparison, which
/// 99 % of genuine pairs of the evaluation set reach (docs/accuracy.md).
const DEFAULT_SAME_PERSON_SIMILARITY: f32 = 0.5;

/// Default of `duplicate_check_min_similarity`, as for `PUT /person`.
const DEFAULT_DUPLICATE_SIMILARITY: f32 = 0.7;

#[derive(Debug, Deserialize, ToSchema)]
pub struct AddFaceBody {
    /// Base64 JPEG/PNG/WebP with exactly one face.
    pub face_base_64: String,
    /// `NoStorage`, `StoreThumbnails` (default) or `StoreFullImage`.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub face_storage_type: Option<FaceStorage>,
    /// Refuse a face that does not resemble the person's other faces (default true).
    #[serde(default)]
    pub check_same_person: Option<bool>,
    /// Similarity to the person's best face below which the face is refused (default 0.5).
    #[serde(default)]
    pub min_similarity_to_person: Option<f32>,
    /// Refuse a face already enrolled under another person_id (default false).
    #[serde(default)]
    pub check_duplicates: Option<bool>,
    /// Similarity at which another person counts as the same face (default 0.7).
    #[serde(default)]
    pub duplicate_check_min_similarity: Option<f32>,
    /// Run the liveness checks and refuse a non-live face (default false).
    #[serde(default)]
    pub check_liveness: Option<bool>,
}

/// One face of a person.
#[derive(Debug, Serialize, ToSchema)]
pub struct FaceOut {
    pub face_id: u32,
    /// The stored thumbnail or full image, base64; null with `NoStorage`.
    pub face_base_64: Option<String>,
    #[schema(value_type = String)]
    pub face_storage_type: FaceStorage,
    pub created_at: String,
}

impl FaceOut {
    fn new(face: FaceRecord, image: Option<Vec<u8>>) -> Self {
        Self {
            face_id: face.face_id,
            face_base_64: image.map(|b| encode_base64(&b)),
            face_storage_type: face.storage,
            created_at: rfc3339(face.created_at_ms),
        }
    }
}

/// A person's faces.
#[derive(Debug, Serialize, ToSchema)]
pub struct FaceList {
    pub collection_name: String,
    pub person_id: String,
    pub num_faces: u32,
    pub faces: Vec<FaceOut>,
}

/// The face added, and how many the person has now.
#[derive(Debug, Serialize, ToSchema)]
pub struct AddedFace {
    pub collection_name: String,
    pub person_id: String,
    pub num_faces: u32,
    pub face: FaceOut,
    /// Similarity of the new face to the person's best other face.
    pub similarity_to_person: Option<f32>,
}

/// The face deleted, and how many the person has left.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeletedFace {
    pub collection_name: String,
    pub person_id: String,
    pub face_id: u32,
    pub num_faces: u32,
}

#[utoipa::path(get, path = "/person/{collection_name}/{person_id}/faces", tag = "persons",
    params(("collection_name" = String, Path), ("person_id" = String, Path)),
    responses((status = 200, body = FaceList), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list(
    State(state): State<SharedState>,
    Path((collection, person_id)): Path<(String, String)>,
) -> Result<axum::response::Response, ApiError> {
    check_collection_name(&collection)?;
    let images = super::response_images(&state, Some(true), 1);
    let (collection, person, faces) = state
        .blocking(move |s| {
            let (person, faces) = s.store.faces(&collection, &person_id, images)?;
            Ok((collection, person, faces))
        })
        .await?;
    let omitted = faces
        .iter()
        .filter(|(f, img)| img.is_none() && images.wants(f.storage))
        .count();
    Ok(super::json_with_omitted(
        FaceList {
            collection_name: collection,
            person_id: person.person_id,
            num_faces: person.num_faces,
            faces: faces
                .into_iter()
                .map(|(f, img)| FaceOut::new(f, img))
                .collect(),
        },
        omitted,
    ))
}

#[utoipa::path(post, path = "/person/{collection_name}/{person_id}/faces", tag = "persons",
    params(("collection_name" = String, Path), ("person_id" = String, Path)),
    request_body = AddFaceBody,
    responses((status = 200, body = AddedFace),
        (status = 400, description = "ERR_FACE_NOT_DETECTED, ERR_MULTIPLE_FACES, ERR_BASE64_IMAGE_CANNOT_BE_DECODED, ERR_LIVENESS_ERROR", body = ErrorBody),
        (status = 404, description = "ERR_NOT_FOUND (collection or person)", body = ErrorBody),
        (status = 409, description = "ERR_DUPLICATE_PERSON", body = ErrorBody),
        (status = 422, description = "ERR_FACE_DOES_NOT_MATCH_PERSON; ERR_INVALID_REQUEST (the person already has store.max_faces_per_person faces)", body = ErrorBody),
        (status = 503, description = "ERR_BUSY", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn add(
    State(state): State<SharedState>,
    Path((collection, person_id)): Path<(String, String)>,
    ApiJson(body): ApiJson<AddFaceBody>,
) -> Result<Json<AddedFace>, ApiError> {
    check_collection_name(&collection)?;
    check_person_id(&person_id)?;
    let same_score = check_score(
        "min_similarity_to_person",
        body.min_similarity_to_person
            .unwrap_or(DEFAULT_SAME_PERSON_SIMILARITY),
    )?;
    let duplicate_score = check_score(
        "duplicate_check_min_similarity",
        body.duplicate_check_min_similarity
            .unwrap_or(DEFAULT_DUPLICATE_SIMILARITY),
    )?;
    // The person must exist before a photo is analysed.
    {
        let (c, p) = (collection.clone(), person_id.clone());
        state
            .blocking(move |s| Ok(s.store.person(&c, &p).map(|_| ())?))
            .await?;
    }
    let storage = body.face_storage_type.unwrap_or_default();
    let liveness = body.check_liveness.unwrap_or(false);
    let analysis = analyse(&state, body.face_base_64, wanted_for(storage, liveness)).await?;
    analysis.single_face(state.config.server.secondary_face_ratio)?;
    if liveness {
        analysis.require_live()?;
    }
    let face = new_face(&state, analysis, storage)?;
    let (c, p, template) = (collection.clone(), person_id.clone(), face.template.clone());
    let closeness = state
        .blocking(move |s| Ok(s.store.closeness_to_person(&c, &p, &template)?))
        .await?;
    let similarity = closeness.map(|c| score_of_closeness(&state, c));
    if body.check_same_person.unwrap_or(true) {
        if let Some(score) = similarity.filter(|&score| score < same_score) {
            return Err(ApiError::new(ErrorCode::ErrFaceDoesNotMatchPerson)
                .with_metadata("similarity_to_person", score)
                .with_metadata("min_similarity_to_person", same_score));
        }
    }
    let duplicate = body
        .check_duplicates
        .unwrap_or(false)
        .then(|| closeness_for_score(&state, duplicate_score));
    let image = face.image.clone();
    let (c, p) = (collection.clone(), person_id.clone());
    let added = state
        .blocking(move |s| Ok(s.store.add_face(&c, &p, face, duplicate)?))
        .await?;
    match added {
        Ok((person, record)) => {
            tracing::info!(collection = %collection, person_id = %person_id,
                face_id = record.face_id, num_faces = person.num_faces, "face added");
            Ok(Json(AddedFace {
                collection_name: collection,
                person_id,
                num_faces: person.num_faces,
                face: FaceOut::new(record, image),
                similarity_to_person: similarity,
            }))
        }
        Err(other) => {
            Err(ApiError::new(ErrorCode::ErrDuplicatePerson).with_metadata("person_id", other))
        }
    }
}

#[utoipa::path(delete, path = "/person/{collection_name}/{person_id}/faces/{face_id}", tag = "persons",
    params(("collection_name" = String, Path), ("person_id" = String, Path), ("face_id" = u32, Path)),
    responses((status = 200, body = DeletedFace),
        (status = 404, description = "ERR_NOT_FOUND (collection, person or face)", body = ErrorBody),
        (status = 422, description = "ERR_INVALID_REQUEST: the person's last face (delete the person instead)", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn delete(
    State(state): State<SharedState>,
    Path((collection, person_id, face_id)): Path<(String, String, String)>,
) -> Result<Json<DeletedFace>, ApiError> {
    check_collection_name(&collection)?;
    // No face has an id that is not a number: that is a face not found, not a bad request.
    let face_id: u32 = face_id
        .parse()
        .map_err(|_| ApiError::new(ErrorCode::ErrNotFound))?;
    let (c, p) = (collection.clone(), person_id.clone());
    let person = state
        .blocking(move |s| Ok(s.store.delete_face(&c, &p, face_id)?))
        .await?;
    tracing::info!(collection = %collection, person_id = %person_id, face_id,
        num_faces = person.num_faces, "face deleted");
    Ok(Json(DeletedFace {
        collection_name: collection,
        person_id,
        face_id,
        num_faces: person.num_faces,
    }))
}
