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
use super::persons::{
    closeness_for_score, new_face, score_of_closeness, wanted_for, DEFAULT_DUPLICATE_SIMILARITY,
    DEFAULT_SAME_PERSON_SIMILARITY,
};
use super::SharedState;
use facegate_core::clock::rfc3339;
use facegate_core::store::{FaceRecord, FaceRefused, FaceStorage};

#[derive(Debug, Deserialize, ToSchema)]
pub struct AddFaceBody {
    /// Base64 JPEG/PNG/WebP with exactly one face.
    pub face_base_64: String,
    /// `NoStorage`, `StoreThumbnails` (default) or `StoreFullImage`.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub face_storage_type: Option<FaceStorage>,
    /// Refuse a face that does not resemble every one of the person's faces (default true).
    #[serde(default)]
    pub check_same_person: Option<bool>,
    /// Similarity to each of the person's faces below which the face is refused (default 0.5).
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
    /// Similarity of the new face to the person's least alike other face.
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
    let same_person = body
        .check_same_person
        .unwrap_or(true)
        .then(|| closeness_for_score(&state, same_score));
    let duplicate = body
        .check_duplicates
        .unwrap_or(false)
        .then(|| closeness_for_score(&state, duplicate_score));
    let image = face.image.clone();
    let (c, p) = (collection.clone(), person_id.clone());
    let added = state
        .blocking(move |s| Ok(s.store.add_face(&c, &p, face, same_person, duplicate)?))
        .await?;
    match added {
        Ok(added) => {
            tracing::info!(collection = %collection, person_id = %person_id,
                face_id = added.face.face_id, num_faces = added.person.num_faces, "face added");
            Ok(Json(AddedFace {
                collection_name: collection,
                person_id,
                num_faces: added.person.num_faces,
                face: FaceOut::new(added.face, image),
                similarity_to_person: added.least_closeness.map(|c| score_of_closeness(&state, c)),
            }))
        }
        Err(FaceRefused::Duplicate(other)) => {
            Err(ApiError::new(ErrorCode::ErrDuplicatePerson).with_metadata("person_id", other))
        }
        Err(FaceRefused::NotSamePerson { least_closeness }) => {
            Err(ApiError::new(ErrorCode::ErrFaceDoesNotMatchPerson)
                .with_metadata(
                    "similarity_to_person",
                    least_closeness.map(|c| score_of_closeness(&state, c)),
                )
                .with_metadata("min_similarity_to_person", same_score))
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
    // Face ids are written as plain decimals; anything else ("+3", "03", "x") names no face.
    let canonical =
        |id: &str| id.bytes().all(|b| b.is_ascii_digit()) && (id == "0" || !id.starts_with('0'));
    let face_id: u32 = canonical(&face_id)
        .then(|| face_id.parse().ok())
        .flatten()
        .ok_or_else(|| ApiError::new(ErrorCode::ErrNotFound))?;
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
