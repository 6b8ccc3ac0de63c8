//! `/unknowns` [facegate]: the strangers the cameras have seen (faces decided `unknown`,
//! clustered into persistent `unknown-<n>` ids): list, read, enrol as a person, ignore, forget.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::access_rules::AccessRules;
use super::error::{ApiError, ErrorBody, ErrorCode};
use super::extract::{
    check_collection_name, check_metadata, check_person_id, check_person_name, cursor_page,
    encode_base64, ApiJson, ApiQuery,
};
use super::persons::PersonOut;
use super::SharedState;
use facegate_core::clock::rfc3339;
use facegate_core::store::{Enrolment, FaceStorage, NewFace};
use facegate_core::strangers::{self, Reservation, Stranger, Strangers};

/// Most strangers in one page.
const MAX_LIMIT: usize = 500;
/// Most of a stranger's faces an enrolment takes.
pub const MAX_ENROLLED_FACES: usize = 5;

#[derive(Debug, Deserialize, IntoParams)]
pub struct UnknownsQuery {
    /// Strangers per page, 1–500 (default 50), newest first.
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A stranger as listed: its best face only.
#[derive(Debug, Serialize, ToSchema)]
pub struct UnknownOut {
    /// `unknown-<n>`: the id on the `unknown` events of this face.
    pub unknown_id: String,
    pub first_seen: String,
    pub last_seen: String,
    pub sightings: u64,
    /// Never reported again.
    pub ignored: bool,
    pub last_camera: String,
    /// Faces kept (`strangers.faces_kept`).
    pub num_faces: usize,
    /// Base64 JPEG of the best face.
    pub thumbnail: Option<String>,
}

/// One stranger with every kept face.
#[derive(Debug, Serialize, ToSchema)]
pub struct UnknownDetail {
    #[serde(flatten)]
    pub summary: UnknownOut,
    pub faces: Vec<UnknownFaceOut>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UnknownFaceOut {
    pub seen: String,
    pub camera: String,
    /// The track's quality score.
    pub quality: f32,
    pub thumbnail: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UnknownPage {
    pub unknowns: Vec<UnknownOut>,
    pub next_cursor: Option<String>,
}

/// `POST /unknowns/{unknown_id}/enrol`: the person the stranger becomes.
#[derive(Debug, Deserialize, ToSchema)]
pub struct EnrolUnknownBody {
    pub collection_name: String,
    /// Default: a new UUID. Must not be enrolled already (ERR_ALREADY_EXISTS).
    #[serde(default)]
    pub person_id: Option<String>,
    #[serde(default)]
    pub person_name: Option<String>,
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub access: Option<AccessRules>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UnknownIgnored {
    pub unknown_id: String,
    pub ignored: bool,
}

impl UnknownOut {
    fn new(s: &Stranger) -> Self {
        Self {
            unknown_id: strangers::id_text(s.id),
            first_seen: rfc3339(s.first_seen_ms),
            last_seen: rfc3339(s.last_seen_ms),
            sightings: s.sightings,
            ignored: s.ignored,
            last_camera: s.last_camera.clone(),
            num_faces: s.faces.len(),
            thumbnail: s
                .faces
                .iter()
                .find_map(|f| f.thumbnail.as_deref())
                .map(encode_base64),
        }
    }
}

fn book(state: &SharedState) -> Result<std::sync::Arc<Strangers>, ApiError> {
    state.strangers.clone().ok_or_else(|| {
        ApiError::with_message(
            ErrorCode::ErrNotFound,
            "Strangers are not kept (strangers.enabled = false).",
        )
    })
}

fn parse(text: &str) -> Result<u64, ApiError> {
    strangers::parse_id(text).ok_or_else(|| {
        ApiError::invalid(format!("{text:?} is not a stranger id such as unknown-12"))
            .with_metadata("field", "unknown_id")
    })
}

fn not_found() -> ApiError {
    ApiError::with_message(
        ErrorCode::ErrNotFound,
        "No such stranger (never seen, enrolled, deleted, or forgotten by strangers.max_count / max_age_days).",
    )
}

fn already_enrolled(person_id: String) -> ApiError {
    ApiError::with_message(
        ErrorCode::ErrAlreadyExists,
        "A person with this id is enrolled already: choose another person_id.",
    )
    .with_metadata("person_id", person_id)
}

fn store_error(e: facegate_core::strangers::StrangerError) -> ApiError {
    ApiError::internal("strangers", &e)
}

#[utoipa::path(get, path = "/unknowns", tag = "strangers", params(UnknownsQuery),
    responses((status = 200, body = UnknownPage),
        (status = 404, description = "ERR_NOT_FOUND: strangers are off", body = ErrorBody),
        (status = 422, description = "ERR_INVALID_REQUEST: a bad limit or cursor", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list(
    State(state): State<SharedState>,
    ApiQuery(q): ApiQuery<UnknownsQuery>,
) -> Result<Json<UnknownPage>, ApiError> {
    let book = book(&state)?;
    let (limit, before) = cursor_page(q.limit, q.cursor.as_deref(), MAX_LIMIT)?;
    let (page, next) = state
        .blocking(move |_| {
            // A quiet appliance has had no sighting to apply the age limit with.
            let now = facegate_core::clock::unix_ms(std::time::SystemTime::now());
            book.forget_due(now).map_err(store_error)?;
            book.list(limit, before).map_err(store_error)
        })
        .await?;
    Ok(Json(UnknownPage {
        unknowns: page.iter().map(UnknownOut::new).collect(),
        next_cursor: next.map(|n| n.to_string()),
    }))
}

#[utoipa::path(get, path = "/unknowns/{unknown_id}", tag = "strangers",
    params(("unknown_id" = String, Path, description = "unknown-<n>")),
    responses((status = 200, body = UnknownDetail), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn get_one(
    State(state): State<SharedState>,
    Path(unknown_id): Path<String>,
) -> Result<Json<UnknownDetail>, ApiError> {
    let book = book(&state)?;
    let id = parse(&unknown_id)?;
    let found = state
        .blocking(move |_| book.get(id).map_err(store_error))
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(UnknownDetail {
        summary: UnknownOut::new(&found),
        faces: found
            .faces
            .iter()
            .map(|f| UnknownFaceOut {
                seen: rfc3339(f.seen_ms),
                camera: f.camera.clone(),
                quality: f.quality,
                thumbnail: f.thumbnail.as_deref().map(encode_base64),
            })
            .collect(),
    }))
}

#[utoipa::path(post, path = "/unknowns/{unknown_id}/enrol", tag = "strangers",
    params(("unknown_id" = String, Path, description = "unknown-<n>")),
    request_body = EnrolUnknownBody,
    responses((status = 200, description = "The new person, with up to 5 of the stranger's best faces; the stranger is gone", body = PersonOut),
        (status = 404, description = "ERR_NOT_FOUND: no such stranger or collection", body = ErrorBody),
        (status = 409, description = "ERR_ALREADY_EXISTS: the person id is enrolled already", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn enrol(
    State(state): State<SharedState>,
    Path(unknown_id): Path<String>,
    ApiJson(body): ApiJson<EnrolUnknownBody>,
) -> Result<Json<PersonOut>, ApiError> {
    let book = book(&state)?;
    let id = parse(&unknown_id)?;
    check_collection_name(&body.collection_name)?;
    let person_id = body
        .person_id
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    check_person_id(&person_id)?;
    let person_name = body.person_name.unwrap_or_default();
    check_person_name(&person_name)?;
    let metadata = body.metadata.unwrap_or_default();
    check_metadata(&metadata)?;
    let access = body
        .access
        .map(|a| a.checked(&state.config.access))
        .transpose()?;
    state.require_collection(&body.collection_name).await?;
    let collection = body.collection_name;
    let (collection, person, image) = state
        .blocking(move |s| {
            if s.store.person(&collection, &person_id).is_ok() {
                return Err(already_enrolled(person_id));
            }
            // Reserved, not taken out: of two enrolments of one stranger only one gets it,
            // and a face seen meanwhile still keeps its id. Removed once the person is
            // written; a crash in between leaves the stranger to delete, never loses it.
            let stranger = match book.reserve(id).map_err(store_error)? {
                Reservation::Got(stranger) => stranger,
                Reservation::Missing => return Err(not_found()),
                Reservation::Busy => {
                    return Err(ApiError::with_message(
                        ErrorCode::ErrAlreadyExists,
                        "This stranger is being enrolled by another request.",
                    ))
                }
            };
            let written = enrol_stranger(
                s,
                &collection,
                &stranger,
                person_id,
                person_name,
                metadata,
                access,
            )
            .and_then(|(person, image)| {
                // Enrolled: the face is a person now, matched as one.
                book.remove(id).map_err(store_error)?;
                Ok((collection, person, image))
            });
            book.release(id);
            written
        })
        .await?;
    tracing::info!(collection = %collection, person_id = %person.person_id,
        unknown_id = %unknown_id, faces = person.num_faces, "stranger enrolled");
    Ok(Json(PersonOut::new(&collection, person, image)))
}

/// Write the person a stranger becomes (never replacing one): its best faces as the camera
/// made them.
fn enrol_stranger(
    s: &super::AppState,
    collection: &str,
    stranger: &Stranger,
    person_id: String,
    person_name: String,
    metadata: BTreeMap<String, String>,
    access: Option<facegate_core::access::rules::PersonAccess>,
) -> Result<(facegate_core::store::PersonRecord, Option<Vec<u8>>), ApiError> {
    let dim = s.store.model().dim;
    if stranger.faces.iter().any(|f| f.template.len() != dim) {
        return Err(ApiError::with_message(
            ErrorCode::ErrInvalidRequest,
            "The stranger's faces were embedded by another model than the store's.",
        ));
    }
    let most = MAX_ENROLLED_FACES.min(s.config.store.max_faces_per_person as usize);
    let faces: Vec<NewFace> = stranger
        .faces
        .iter()
        .take(most.max(1))
        .cloned()
        .map(|f| NewFace {
            storage: if f.thumbnail.is_some() {
                FaceStorage::StoreThumbnails
            } else {
                FaceStorage::NoStorage
            },
            image: f.thumbnail,
            template: f.template,
        })
        .collect();
    let image = faces.first().and_then(|f| f.image.clone());
    let enrolment = Enrolment {
        person_id,
        person_name,
        metadata,
        access,
        faces,
    };
    let person_id = enrolment.person_id.clone();
    match s.store.enrol_new(collection, enrolment)? {
        Some(person) => Ok((person, image)),
        None => Err(already_enrolled(person_id)),
    }
}

#[utoipa::path(post, path = "/unknowns/{unknown_id}/ignore", tag = "strangers",
    params(("unknown_id" = String, Path, description = "unknown-<n>")),
    responses((status = 200, description = "The stranger is never reported again (still recognised, so that it stays quiet)", body = UnknownIgnored),
        (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn ignore(
    State(state): State<SharedState>,
    Path(unknown_id): Path<String>,
) -> Result<Json<UnknownIgnored>, ApiError> {
    let book = book(&state)?;
    let id = parse(&unknown_id)?;
    if !state
        .blocking(move |_| book.ignore(id).map_err(store_error))
        .await?
    {
        return Err(not_found());
    }
    tracing::info!(unknown_id = %unknown_id, "stranger ignored");
    Ok(Json(UnknownIgnored {
        unknown_id,
        ignored: true,
    }))
}

#[utoipa::path(delete, path = "/unknowns/{unknown_id}", tag = "strangers",
    params(("unknown_id" = String, Path, description = "unknown-<n>")),
    responses((status = 200, description = "Forgotten: the same face again becomes a new stranger", body = Object),
        (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn delete(
    State(state): State<SharedState>,
    Path(unknown_id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let book = book(&state)?;
    let id = parse(&unknown_id)?;
    if !state
        .blocking(move |_| book.remove(id).map_err(store_error))
        .await?
    {
        return Err(not_found());
    }
    tracing::info!(unknown_id = %unknown_id, "stranger deleted");
    Ok(Json(serde_json::json!({})))
}
