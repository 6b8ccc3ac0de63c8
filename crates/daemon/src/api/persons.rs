//! `PUT /person`, `PUT /persons` (upstream) and the person extensions (list, read, delete).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::access_rules::AccessRules;
use super::collections::ListQuery;
use super::error::{ApiError, ErrorBody, ErrorCode};
use super::extract::{
    check_collection_name, check_metadata, check_person_id, check_person_name, check_score,
    encode_base64, parse_json, read_body, ApiJson, ApiQuery,
};
use super::faces::{analyse, Analysis, Wanted};
use super::{AppState, SharedState};
use facegate_core::clock::rfc3339;
use facegate_core::store::{Enrolment, FaceStorage, NewFace, PersonRecord};

/// Default of `duplicate_check_min_similarity`.
pub const DEFAULT_DUPLICATE_SIMILARITY: f32 = 0.7;

/// Default of `min_similarity_to_person`: the similarity a person's faces must have to each
/// other, a false-match rate of 1e-3 per comparison, which 99 % of genuine pairs of the
/// evaluation set reach (docs/accuracy.md).
pub const DEFAULT_SAME_PERSON_SIMILARITY: f32 = 0.5;

#[derive(Debug, Deserialize, ToSchema)]
pub struct PersonBody {
    pub person_id: String,
    #[serde(default)]
    pub person_name: Option<String>,
    pub collection_name: String,
    /// Base64 JPEG/PNG with exactly one face.
    pub face_base_64: String,
    /// `NoStorage`, `StoreThumbnails` (default) or `StoreFullImage`.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub face_storage_type: Option<FaceStorage>,
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Refuse a face already enrolled under another person_id (default false).
    #[serde(default)]
    pub check_duplicates: Option<bool>,
    /// Similarity at which another person counts as the same face (default 0.7).
    #[serde(default)]
    pub duplicate_check_min_similarity: Option<f32>,
    /// Run the liveness checks and refuse a non-live face (default false).
    #[serde(default)]
    pub check_liveness: Option<bool>,
    /// Access rules [facegate]; absent or null keeps the rules of a person enrolled under
    /// this id before (a new photo never lifts a block), `{}` clears them.
    #[serde(default)]
    pub access: Option<AccessRules>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct BulkItem {
    pub person_id: String,
    #[serde(default)]
    pub person_name: Option<String>,
    /// Base64 JPEG/PNG/WebP with exactly one face. May be left out when `faces_base_64` has
    /// at least one photo.
    #[serde(default)]
    pub face_base_64: Option<String>,
    /// More photos of the same person [facegate]: with `face_base_64` at most
    /// `store.max_faces_per_person` (default 5) in all; the person is matched by the best.
    #[serde(default)]
    pub faces_base_64: Option<Vec<String>>,
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Access rules [facegate], as in `PUT /person`.
    #[serde(default)]
    pub access: Option<AccessRules>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct BulkBody {
    pub collection_name: String,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub face_storage_type: Option<FaceStorage>,
    /// Refuse an item whose photos (`face_base_64` and `faces_base_64`) are not all alike at
    /// similarity 0.5 or more [facegate] (default true).
    #[serde(default)]
    pub check_same_person: Option<bool>,
    /// Also accepted as `Persons`. At most `server.max_bulk_items` (default 1000).
    #[serde(alias = "Persons")]
    #[schema(value_type = Vec<BulkItem>)]
    pub persons: BulkItems,
}

thread_local! {
    /// The item limit of the bulk body being parsed on this thread, and whether it was hit
    /// (see [`parse_bulk`]): serde offers no other way to hand a run-time limit to a field's
    /// `Deserialize`.
    static BULK_ITEM_LIMIT: std::cell::Cell<(usize, bool)> =
        const { std::cell::Cell::new((usize::MAX, false)) };
}

/// The raw items of a bulk request, each kept as its JSON text (no tree of values is built,
/// however deep or wide an item is). Counted while they are parsed, so an array of a million
/// tiny elements is refused at the limit instead of being built first.
#[derive(Debug, Default)]
pub struct BulkItems(pub Vec<Box<serde_json::value::RawValue>>);

impl<'de> Deserialize<'de> for BulkItems {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Items;
        impl<'de> serde::de::Visitor<'de> for Items {
            type Value = BulkItems;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array of persons")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<BulkItems, A::Error> {
                let (limit, _) = BULK_ITEM_LIMIT.with(|l| l.get());
                let mut items =
                    Vec::with_capacity(seq.size_hint().unwrap_or(0).min(limit).min(1024));
                while let Some(item) = seq.next_element::<Box<serde_json::value::RawValue>>()? {
                    if items.len() == limit {
                        BULK_ITEM_LIMIT.with(|l| l.set((limit, true)));
                        return Err(serde::de::Error::custom(format!(
                            "at most {limit} persons per request (server.max_bulk_items); \
                             send the rest in further requests"
                        )));
                    }
                    items.push(item);
                }
                Ok(BulkItems(items))
            }
        }
        d.deserialize_seq(Items)
    }
}

/// Parse a bulk body, refusing more than `limit` items while parsing.
pub fn parse_bulk(bytes: &[u8], limit: usize) -> Result<BulkBody, ApiError> {
    BULK_ITEM_LIMIT.with(|l| l.set((limit, false)));
    let parsed = parse_json::<BulkBody>(bytes);
    let (_, hit) = BULK_ITEM_LIMIT.with(|l| l.replace((usize::MAX, false)));
    parsed.map_err(|e| {
        if hit {
            // The message names the limit; the status says the request was too large.
            ApiError::with_message(ErrorCode::ErrPayloadTooLarge, e.message)
                .with_metadata("field", "persons")
                .with_metadata("max_bulk_items", limit)
        } else {
            e
        }
    })
}

/// A stored person.
#[derive(Debug, Serialize, ToSchema)]
pub struct PersonOut {
    pub person_id: String,
    pub person_name: String,
    pub collection_name: String,
    pub metadata: BTreeMap<String, String>,
    /// The stored thumbnail or full image, base64; null with `NoStorage`.
    pub face_base_64: Option<String>,
    pub num_faces: u32,
    /// Ids of the person's faces, oldest first [facegate]; `face_base_64` is the first one's.
    pub face_ids: Vec<u32>,
    pub created_at: String,
    pub updated_at: String,
    /// Access rules [facegate]; absent when the person has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access: Option<AccessRules>,
}

impl PersonOut {
    pub fn new(collection: &str, p: PersonRecord, image: Option<Vec<u8>>) -> Self {
        Self {
            person_id: p.person_id,
            person_name: p.person_name,
            collection_name: collection.to_owned(),
            metadata: p.metadata,
            face_base_64: image.map(|b| encode_base64(&b)),
            num_faces: p.num_faces,
            face_ids: p.faces.iter().map(|f| f.face_id).collect(),
            created_at: rfc3339(p.created_at_ms),
            updated_at: rfc3339(p.updated_at_ms),
            access: p.access.as_ref().map(AccessRules::shown),
        }
    }
}

/// One item's outcome in a bulk enrolment.
#[derive(Debug, Serialize, ToSchema)]
pub struct ItemResult {
    /// `OK` or the error code a single `PUT /person` would have returned.
    pub code: String,
    pub message: String,
    #[schema(value_type = Object)]
    pub metadata: BTreeMap<String, serde_json::Value>,
}

impl ItemResult {
    fn ok(person_id: &str) -> Self {
        Self {
            code: "OK".into(),
            message: "Person enrolled.".into(),
            metadata: BTreeMap::from([("person_id".into(), person_id.into())]),
        }
    }

    fn error(person_id: Option<&str>, e: ApiError) -> Self {
        let mut metadata = e.metadata.unwrap_or_default();
        if let Some(id) = person_id {
            metadata.insert("person_id".into(), id.into());
        }
        Self {
            code: e.code.as_str().into(),
            message: e.message,
            metadata,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PersonList {
    pub count: usize,
    pub persons: Vec<PersonOut>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PersonRef {
    pub collection_name: String,
    pub person_id: String,
}

/// What to compute for an enrolment photo.
pub fn wanted_for(storage: FaceStorage, liveness: bool) -> Wanted {
    Wanted {
        embeddings: true,
        thumbnails: storage == FaceStorage::StoreThumbnails,
        liveness,
        original: storage == FaceStorage::StoreFullImage,
    }
}

/// The template and stored image of an enrolment photo.
pub fn new_face(
    state: &AppState,
    mut analysis: Analysis,
    storage: FaceStorage,
) -> Result<NewFace, ApiError> {
    let face = analysis.single_face(state.config.server.secondary_face_ratio)?;
    let template = face
        .embedding
        .clone()
        .expect("single_face has an embedding");
    let thumbnail = face.thumbnail.clone();
    // The posted bytes move into the record: they can be up to the body limit.
    let image = match storage {
        FaceStorage::NoStorage => None,
        FaceStorage::StoreThumbnails => thumbnail,
        FaceStorage::StoreFullImage => analysis.original.take(),
    };
    Ok(NewFace {
        template,
        image,
        storage,
    })
}

/// Closeness at or above which a comparison reaches `score`.
pub fn closeness_for_score(state: &AppState, score: f32) -> f32 {
    let info = state.workers.info();
    info.metric.closeness(info.calibration.raw_threshold(score))
}

/// The similarity score of a closeness.
pub fn score_of_closeness(state: &AppState, closeness: f32) -> f32 {
    let info = state.workers.info();
    info.calibration
        .score(info.metric.raw_from_closeness(closeness))
}

#[utoipa::path(put, path = "/person", tag = "persons", request_body = PersonBody,
    responses((status = 200, body = PersonOut),
        (status = 400, description = "ERR_FACE_NOT_DETECTED, ERR_MULTIPLE_FACES, ERR_BASE64_IMAGE_CANNOT_BE_DECODED, ERR_LIVENESS_ERROR, ERR_INVALID_COLLECTION_NAME", body = ErrorBody),
        (status = 404, description = "ERR_NOT_FOUND (collection)", body = ErrorBody),
        (status = 409, description = "ERR_DUPLICATE_PERSON", body = ErrorBody),
        (status = 503, description = "ERR_BUSY", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn upsert(
    State(state): State<SharedState>,
    ApiJson(body): ApiJson<PersonBody>,
) -> Result<Json<PersonOut>, ApiError> {
    check_collection_name(&body.collection_name)?;
    check_person_id(&body.person_id)?;
    let duplicate_score = check_score(
        "duplicate_check_min_similarity",
        body.duplicate_check_min_similarity
            .unwrap_or(DEFAULT_DUPLICATE_SIMILARITY),
    )?;
    let person_name = body.person_name.unwrap_or_default();
    check_person_name(&person_name)?;
    let metadata = body.metadata.unwrap_or_default();
    check_metadata(&metadata)?;
    let access = body
        .access
        .map(|a| a.checked(&state.config.access))
        .transpose()?;
    state.require_collection(&body.collection_name).await?;
    let storage = body.face_storage_type.unwrap_or_default();
    let liveness = body.check_liveness.unwrap_or(false);
    let analysis = analyse(&state, body.face_base_64, wanted_for(storage, liveness)).await?;
    // A missing or doubled face is reported before liveness, as upstream does.
    analysis.single_face(state.config.server.secondary_face_ratio)?;
    if liveness {
        analysis.require_live()?;
    }
    let face = new_face(&state, analysis, storage)?;
    let image = face.image.clone();
    let enrolment = Enrolment {
        person_id: body.person_id,
        person_name,
        metadata,
        access,
        faces: vec![face],
    };
    let duplicate = body
        .check_duplicates
        .unwrap_or(false)
        .then(|| closeness_for_score(&state, duplicate_score));
    let collection = body.collection_name;
    let (collection, result) = state
        .blocking(move |s| {
            let mut out = s.store.enrol(&collection, vec![enrolment], duplicate)?;
            Ok((collection, out.remove(0)))
        })
        .await?;
    match result {
        Ok(person) => {
            tracing::info!(collection = %collection, person_id = %person.person_id, "person enrolled");
            Ok(Json(PersonOut::new(&collection, person, image)))
        }
        Err(other) => {
            Err(ApiError::new(ErrorCode::ErrDuplicatePerson).with_metadata("person_id", other))
        }
    }
}

/// Analyse, waiting for a free worker instead of failing the item: the bulk request as a
/// whole was accepted, so its items queue behind each other.
async fn analyse_patiently(
    state: &SharedState,
    base64: String,
    wanted: Wanted,
) -> Result<Analysis, ApiError> {
    let mut waited = Duration::ZERO;
    loop {
        match analyse(state, base64.clone(), wanted).await {
            Err(e) if e.code == ErrorCode::ErrBusy && waited < Duration::from_secs(60) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                waited += Duration::from_millis(10);
            }
            other => return other,
        }
    }
}

#[utoipa::path(put, path = "/persons", tag = "persons", request_body = BulkBody,
    responses((status = 200, description = "One result per item, in input order", body = Vec<ItemResult>),
        (status = 404, description = "ERR_NOT_FOUND (collection)", body = ErrorBody),
        (status = 413, description = "ERR_PAYLOAD_TOO_LARGE: more items than server.max_bulk_items", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn bulk_upsert(
    State(state): State<SharedState>,
    request: axum::extract::Request,
) -> Result<Json<Vec<ItemResult>>, ApiError> {
    let bytes = read_body(request, &()).await?;
    let body = parse_bulk(&bytes, state.config.server.max_bulk_items)?;
    drop(bytes);
    check_collection_name(&body.collection_name)?;
    state.require_collection(&body.collection_name).await?;
    let storage = body.face_storage_type.unwrap_or_default();
    let wanted = wanted_for(storage, false);
    let same_person = body
        .check_same_person
        .unwrap_or(true)
        .then(|| closeness_for_score(&state, DEFAULT_SAME_PERSON_SIMILARITY));
    let n = body.persons.0.len();
    // Items are analysed as many at a time as there are workers: an accepted request never
    // holds more than that many images decoded, whatever its length.
    let in_flight = state.workers.workers().max(1);
    let mut items = body.persons.0.into_iter().enumerate();
    let mut tasks = tokio::task::JoinSet::new();
    let mut slots: Vec<Option<ItemOutcome>> = (0..n).map(|_| None).collect();
    loop {
        while tasks.len() < in_flight {
            let Some((i, raw)) = items.next() else { break };
            let state = state.clone();
            tasks.spawn(async move {
                let (id, result) = bulk_item(&state, raw, wanted, storage, same_person).await;
                (i, id, result)
            });
        }
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        let (i, id, result) = joined.map_err(|e| ApiError::internal("bulk item", &e))?;
        slots[i] = Some((id, result));
    }
    let slots: Vec<_> = slots
        .into_iter()
        .map(|s| s.expect("every item ran"))
        .collect();
    // Every good item goes into one transaction: one disk sync for the whole request.
    let good: Vec<Enrolment> = slots
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok().cloned())
        .collect();
    let collection = body.collection_name.clone();
    let stored = if good.is_empty() {
        Vec::new()
    } else {
        state
            .blocking(move |s| Ok(s.store.enrol(&collection, good, None)?))
            .await?
    };
    let mut stored = stored.into_iter();
    let results: Vec<ItemResult> = slots
        .into_iter()
        .map(|(id, r)| match r {
            Ok(e) => match stored.next() {
                Some(Ok(_)) => ItemResult::ok(&e.person_id),
                _ => ItemResult::error(
                    Some(&e.person_id),
                    ApiError::new(ErrorCode::ErrDatabaseError),
                ),
            },
            Err(err) => ItemResult::error(id.as_deref(), err),
        })
        .collect();
    let ok = results.iter().filter(|r| r.code == "OK").count();
    tracing::info!(collection = %body.collection_name, items = results.len(), ok, "bulk enrolment");
    Ok(Json(results))
}

/// One bulk item: checked, then analysed through the worker queue.
async fn bulk_item(
    state: &SharedState,
    raw: Box<serde_json::value::RawValue>,
    wanted: Wanted,
    storage: FaceStorage,
    same_person: Option<f32>,
) -> (Option<String>, Result<Enrolment, ApiError>) {
    let item: BulkItem = match parse_json(raw.get().as_bytes()) {
        Ok(item) => item,
        Err(e) => {
            /// Just the id of an item that does not parse, to name it in its result.
            #[derive(Deserialize)]
            struct IdOnly {
                person_id: Option<String>,
            }
            let id = serde_json::from_str::<IdOnly>(raw.get())
                .ok()
                .and_then(|i| i.person_id);
            return (id, Err(e));
        }
    };
    let person_name = item.person_name.unwrap_or_default();
    let metadata = item.metadata.unwrap_or_default();
    let photos: Vec<String> = item
        .face_base_64
        .into_iter()
        .chain(item.faces_base_64.unwrap_or_default())
        .collect();
    let max_faces = state.config.store.max_faces_per_person;
    let checked = check_person_id(&item.person_id)
        .and_then(|()| check_person_name(&person_name))
        .and_then(|()| check_metadata(&metadata))
        .and_then(|()| check_face_count(photos.len(), max_faces));
    let access = match checked.and_then(|()| {
        item.access
            .map(|a| a.checked(&state.config.access))
            .transpose()
    }) {
        Ok(access) => access,
        Err(e) => return (Some(item.person_id), Err(e)),
    };
    // One photo at a time: an item never holds more than one decoded image.
    let mut faces = Vec::with_capacity(photos.len());
    for (i, photo) in photos.into_iter().enumerate() {
        let face = match analyse_patiently(state, photo, wanted).await {
            Ok(analysis) => new_face(state, analysis, storage),
            Err(e) => Err(e),
        };
        match face {
            Ok(face) => faces.push(face),
            // Which photo failed, counted over face_base_64 then faces_base_64.
            Err(e) => return (Some(item.person_id), Err(e.with_metadata("face_index", i))),
        }
    }
    if let Some(min) = same_person {
        if let Err(e) = check_alike(state, &faces, min) {
            return (Some(item.person_id), Err(e));
        }
    }
    let enrolment = Enrolment {
        person_id: item.person_id.clone(),
        person_name,
        metadata,
        access,
        faces,
    };
    (Some(item.person_id), Ok(enrolment))
}

/// Each face of one person must be at least `min_closeness` close to every other: several
/// people under one id would let each of them in as that person.
fn check_alike(state: &AppState, faces: &[NewFace], min_closeness: f32) -> Result<(), ApiError> {
    let metric = state.workers.info().metric;
    for (i, face) in faces.iter().enumerate() {
        for earlier in &faces[..i] {
            let closeness = metric.closeness(metric.compare(&face.template, &earlier.template));
            if closeness < min_closeness {
                return Err(ApiError::new(ErrorCode::ErrFaceDoesNotMatchPerson)
                    .with_metadata("face_index", i)
                    .with_metadata("similarity_to_person", score_of_closeness(state, closeness))
                    .with_metadata("min_similarity_to_person", DEFAULT_SAME_PERSON_SIMILARITY));
            }
        }
    }
    Ok(())
}

/// A person is enrolled with 1 to `store.max_faces_per_person` photos.
fn check_face_count(n: usize, max: u32) -> Result<(), ApiError> {
    if n == 0 {
        return Err(ApiError::with_message(
            ErrorCode::ErrInvalidRequest,
            "face_base_64 (or faces_base_64) is required",
        )
        .with_metadata("field", "face_base_64"));
    }
    if n > max as usize {
        return Err(ApiError::with_message(
            ErrorCode::ErrInvalidRequest,
            format!("{n} photos: a person has at most {max} faces (store.max_faces_per_person)"),
        )
        .with_metadata("field", "faces_base_64")
        .with_metadata("max_faces_per_person", max));
    }
    Ok(())
}

/// A bulk item's person id (when it had one) and its enrolment or error.
type ItemOutcome = (Option<String>, Result<Enrolment, ApiError>);

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct PersonListQuery {
    pub collection_name: String,
    pub skip: Option<usize>,
    pub take: Option<usize>,
    pub search: Option<String>,
    pub order: Option<String>,
    /// Return stored full enrolment photos too (default false: thumbnails only), within
    /// `server.max_response_mib`.
    pub include_images: Option<bool>,
}

#[utoipa::path(get, path = "/persons", tag = "persons", params(PersonListQuery),
    responses((status = 200, body = PersonList), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list(
    State(state): State<SharedState>,
    ApiQuery(q): ApiQuery<PersonListQuery>,
) -> Result<axum::response::Response, ApiError> {
    check_collection_name(&q.collection_name)?;
    let page = ListQuery {
        skip: q.skip,
        take: q.take,
        search: q.search,
        order: q.order,
        digest: None,
    }
    .page()?;
    let collection = q.collection_name;
    let images = super::response_images(&state, q.include_images, 1);
    let (collection, count, persons) = state
        .blocking(move |s| {
            let (count, persons) = s.store.list_persons(&collection, &page, images)?;
            Ok((collection, count, persons))
        })
        .await?;
    let omitted = persons
        .iter()
        .filter(|(p, img)| img.is_none() && images.wants(p.storage))
        .count();
    Ok(super::json_with_omitted(
        PersonList {
            count,
            persons: persons
                .into_iter()
                .map(|(p, img)| PersonOut::new(&collection, p, img))
                .collect(),
        },
        omitted,
    ))
}

#[utoipa::path(get, path = "/person/{collection_name}/{person_id}", tag = "persons",
    params(("collection_name" = String, Path), ("person_id" = String, Path)),
    responses((status = 200, body = PersonOut), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn get_one(
    State(state): State<SharedState>,
    Path((collection, person_id)): Path<(String, String)>,
) -> Result<Json<PersonOut>, ApiError> {
    check_collection_name(&collection)?;
    let (collection, person, image) = state
        .blocking(move |s| {
            let (p, img) = s.store.person(&collection, &person_id)?;
            Ok((collection, p, img))
        })
        .await?;
    Ok(Json(PersonOut::new(&collection, person, image)))
}

/// `PATCH /person/{collection_name}/{person_id}` [facegate]: what changes; an absent field
/// is kept. `access: {}` clears the rules.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PersonEditBody {
    #[serde(default)]
    pub person_name: Option<String>,
    /// Replaces the whole map.
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub access: Option<AccessRules>,
}

#[utoipa::path(patch, path = "/person/{collection_name}/{person_id}", tag = "persons",
    params(("collection_name" = String, Path), ("person_id" = String, Path)),
    request_body = PersonEditBody,
    responses((status = 200, description = "The person as changed; faces are kept", body = PersonOut),
        (status = 404, body = ErrorBody),
        (status = 422, description = "ERR_INVALID_REQUEST naming the field", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn edit(
    State(state): State<SharedState>,
    Path((collection, person_id)): Path<(String, String)>,
    ApiJson(body): ApiJson<PersonEditBody>,
) -> Result<Json<PersonOut>, ApiError> {
    check_collection_name(&collection)?;
    check_person_id(&person_id)?;
    if let Some(name) = &body.person_name {
        check_person_name(name)?;
    }
    if let Some(metadata) = &body.metadata {
        check_metadata(metadata)?;
    }
    let edit = facegate_core::store::PersonEdit {
        person_name: body.person_name,
        metadata: body.metadata,
        access: body
            .access
            .map(|a| a.checked(&state.config.access))
            .transpose()?,
    };
    let (collection, person, image) = state
        .blocking(move |s| {
            s.store.edit_person(&collection, &person_id, edit)?;
            let (p, img) = s.store.person(&collection, &person_id)?;
            Ok((collection, p, img))
        })
        .await?;
    tracing::info!(collection = %collection, person_id = %person.person_id, "person edited");
    Ok(Json(PersonOut::new(&collection, person, image)))
}

async fn delete_person(
    state: SharedState,
    collection: String,
    person_id: String,
) -> Result<Json<PersonRef>, ApiError> {
    check_collection_name(&collection)?;
    let (c, p) = (collection.clone(), person_id.clone());
    state
        .blocking(move |s| Ok(s.store.delete_person(&c, &p)?))
        .await?;
    tracing::info!(collection = %collection, person_id = %person_id, "person deleted");
    Ok(Json(PersonRef {
        collection_name: collection,
        person_id,
    }))
}

#[utoipa::path(delete, path = "/person/{collection_name}/{person_id}", tag = "persons",
    params(("collection_name" = String, Path), ("person_id" = String, Path)),
    responses((status = 200, body = PersonRef), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn delete_by_path(
    State(state): State<SharedState>,
    Path((collection, person_id)): Path<(String, String)>,
) -> Result<Json<PersonRef>, ApiError> {
    delete_person(state, collection, person_id).await
}

#[utoipa::path(delete, path = "/person", tag = "persons", request_body = PersonRef,
    responses((status = 200, body = PersonRef), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn delete_by_body(
    State(state): State<SharedState>,
    ApiJson(body): ApiJson<PersonRef>,
) -> Result<Json<PersonRef>, ApiError> {
    delete_person(state, body.collection_name, body.person_id).await
}
