//! `POST /face-search` (1:N), `POST /multi-face-search` (N:N) and `POST /compare`.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody, ErrorCode};
use super::extract::{check_collection_name, check_score, encode_base64, ApiJson};
use super::faces::{analyse, Wanted};
use super::persons::{closeness_for_score, score_of_closeness};
use super::{AppState, SharedState};
use facegate_core::store::Match;

const DEFAULT_MIN_SIMILARITY: f32 = 0.7;
const MAX_RESULTS_LIMIT: usize = 1000;

#[derive(Debug, Deserialize, ToSchema)]
pub struct FaceSearchBody {
    pub collection_name: String,
    /// Base64 JPEG/PNG with one face.
    pub face_base_64: String,
    /// Default 0.7 (false-match rate 1e-5).
    #[serde(default)]
    pub min_similarity_score: Option<f32>,
    /// Default 1.
    #[serde(default)]
    pub max_results: Option<usize>,
    #[serde(default)]
    pub check_liveness: Option<bool>,
    /// Return stored full enrolment photos too (default false: thumbnails only), within
    /// `server.max_response_mib`.
    #[serde(default)]
    pub include_images: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct MultiFaceSearchBody {
    pub collection_name: String,
    pub multi_face_img_base_64: String,
    #[serde(default)]
    pub min_similarity_score: Option<f32>,
    /// Results per face (default 1).
    #[serde(default)]
    pub max_results: Option<usize>,
    /// As in `/face-search`.
    #[serde(default)]
    pub include_images: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CompareBody {
    pub face_base_64: String,
    pub ref_face_base_64: String,
    #[serde(default)]
    pub min_similarity_score: Option<f32>,
    /// Applies to `face_base_64` only.
    #[serde(default)]
    pub check_liveness: Option<bool>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SearchHit {
    pub person_id: String,
    pub person_name: String,
    pub metadata: BTreeMap<String, String>,
    /// The stored thumbnail, base64; a stored full image only with `include_images`; null
    /// when nothing is stored or the response budget left it out.
    pub face_base_64: Option<String>,
    pub similarity_score: f32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MultiFaceSearchResult {
    pub person_search_results: Vec<SearchHit>,
    pub unrecognized_face_thumbnails_base_64: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CompareResult {
    pub is_match: bool,
    pub similarity_score: f32,
}

fn max_results(v: Option<usize>) -> Result<usize, ApiError> {
    let n = v.unwrap_or(1);
    if (1..=MAX_RESULTS_LIMIT).contains(&n) {
        Ok(n)
    } else {
        Err(ApiError::invalid(format!(
            "max_results must be between 1 and {MAX_RESULTS_LIMIT}"
        ))
        .with_metadata("field", "max_results"))
    }
}

/// Scores are rounded to 4 decimals: more would only show calibration noise.
fn round_score(s: f32) -> f32 {
    (s * 1e4).round() / 1e4
}

fn hit(state: &AppState, m: Match) -> SearchHit {
    SearchHit {
        similarity_score: round_score(score_of_closeness(state, m.closeness)),
        person_id: m.person.person_id,
        person_name: m.person.person_name,
        metadata: m.person.metadata,
        face_base_64: m.image.map(|b| encode_base64(&b)),
    }
}

/// Search the store off the executor; results below `min_score` are dropped. Also returns
/// how many images the response budget left out.
async fn search_store(
    state: &SharedState,
    collection: String,
    templates: Vec<Vec<f32>>,
    k: usize,
    min_score: f32,
    include_images: Option<bool>,
) -> Result<(Vec<Vec<SearchHit>>, usize), ApiError> {
    let images = super::response_images(state, include_images, templates.len());
    // A hair below the threshold so that rounding in the score curve never loses a match
    // that the score itself then admits.
    let min_closeness = closeness_for_score(state, min_score) - 1e-4;
    state
        .blocking(move |s| {
            let mut out = Vec::with_capacity(templates.len());
            let mut omitted = 0;
            for t in &templates {
                let started = std::time::Instant::now();
                let (matches, _) = s.store.search(&collection, t, k, min_closeness, images)?;
                omitted += matches
                    .iter()
                    .filter(|m| m.image.is_none() && images.wants(m.face_storage()))
                    .count();
                s.metrics
                    .search_seconds
                    .observe(started.elapsed().as_secs_f64());
                out.push(
                    matches
                        .into_iter()
                        .map(|m| hit(s, m))
                        .filter(|h| h.similarity_score >= min_score)
                        .collect(),
                );
            }
            Ok((out, omitted))
        })
        .await
}

#[utoipa::path(post, path = "/face-search", tag = "search", request_body = FaceSearchBody,
    responses((status = 200, description = "Matches, best first; [] when none qualifies", body = Vec<SearchHit>),
        (status = 400, description = "ERR_FACE_NOT_DETECTED, ERR_MULTIPLE_FACES, ERR_BASE64_IMAGE_CANNOT_BE_DECODED, ERR_LIVENESS_ERROR", body = ErrorBody),
        (status = 404, description = "ERR_NOT_FOUND (collection)", body = ErrorBody),
        (status = 503, description = "ERR_BUSY", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn face_search(
    State(state): State<SharedState>,
    ApiJson(body): ApiJson<FaceSearchBody>,
) -> Result<axum::response::Response, ApiError> {
    check_collection_name(&body.collection_name)?;
    let min_score = check_score(
        "min_similarity_score",
        body.min_similarity_score.unwrap_or(DEFAULT_MIN_SIMILARITY),
    )?;
    let k = max_results(body.max_results)?;
    state.require_collection(&body.collection_name).await?;
    let liveness = body.check_liveness.unwrap_or(false);
    let wanted = Wanted {
        embeddings: true,
        liveness,
        ..Wanted::default()
    };
    let analysis = analyse(&state, body.face_base_64, wanted).await?;
    let face = analysis.single_face(state.config.server.secondary_face_ratio)?;
    if liveness {
        analysis.require_live()?;
    }
    let template = face
        .embedding
        .clone()
        .expect("single_face has an embedding");
    let (mut results, omitted) = search_store(
        &state,
        body.collection_name,
        vec![template],
        k,
        min_score,
        body.include_images,
    )
    .await?;
    Ok(super::json_with_omitted(results.remove(0), omitted))
}

#[utoipa::path(post, path = "/multi-face-search", tag = "search", request_body = MultiFaceSearchBody,
    responses((status = 200, body = MultiFaceSearchResult),
        (status = 400, description = "ERR_FACE_NOT_DETECTED (no face at all), ERR_BASE64_IMAGE_CANNOT_BE_DECODED", body = ErrorBody),
        (status = 404, description = "ERR_NOT_FOUND (collection)", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn multi_face_search(
    State(state): State<SharedState>,
    ApiJson(body): ApiJson<MultiFaceSearchBody>,
) -> Result<axum::response::Response, ApiError> {
    check_collection_name(&body.collection_name)?;
    let min_score = check_score(
        "min_similarity_score",
        body.min_similarity_score.unwrap_or(DEFAULT_MIN_SIMILARITY),
    )?;
    let k = max_results(body.max_results)?;
    state.require_collection(&body.collection_name).await?;
    let wanted = Wanted {
        embeddings: true,
        thumbnails: true,
        ..Wanted::default()
    };
    let analysis = analyse(&state, body.multi_face_img_base_64, wanted).await?;
    let faces: Vec<_> = analysis
        .faces
        .into_iter()
        .filter(|f| f.embedding.is_some())
        .collect();
    if faces.is_empty() {
        return Err(ApiError::new(ErrorCode::ErrFaceNotDetected));
    }
    let templates = faces
        .iter()
        .map(|f| f.embedding.clone().unwrap_or_default())
        .collect();
    let (per_face, omitted) = search_store(
        &state,
        body.collection_name,
        templates,
        k,
        min_score,
        body.include_images,
    )
    .await?;
    let mut found: Vec<SearchHit> = Vec::new();
    let mut unrecognized = Vec::new();
    for (face, hits) in faces.iter().zip(per_face) {
        if hits.is_empty() {
            if let Some(t) = &face.thumbnail {
                unrecognized.push(encode_base64(t));
            }
        }
        for h in hits {
            // A person appears once, with the best of their scores.
            match found.iter_mut().find(|f| f.person_id == h.person_id) {
                Some(f) if f.similarity_score >= h.similarity_score => {}
                Some(f) => *f = h,
                None => found.push(h),
            }
        }
    }
    found.sort_by(|a, b| b.similarity_score.total_cmp(&a.similarity_score));
    Ok(super::json_with_omitted(
        MultiFaceSearchResult {
            person_search_results: found,
            unrecognized_face_thumbnails_base_64: unrecognized,
        },
        omitted,
    ))
}

#[utoipa::path(post, path = "/compare", tag = "search", request_body = CompareBody,
    responses((status = 200, body = CompareResult),
        (status = 400, description = "ERR_FACE_NOT_DETECTED, ERR_MULTIPLE_FACES, ERR_BASE64_IMAGE_CANNOT_BE_DECODED, ERR_LIVENESS_ERROR", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn compare(
    State(state): State<SharedState>,
    ApiJson(body): ApiJson<CompareBody>,
) -> Result<Json<CompareResult>, ApiError> {
    let min_score = check_score(
        "min_similarity_score",
        body.min_similarity_score.unwrap_or(DEFAULT_MIN_SIMILARITY),
    )?;
    let liveness = body.check_liveness.unwrap_or(false);
    let probe_wanted = Wanted {
        embeddings: true,
        liveness,
        ..Wanted::default()
    };
    let reference_wanted = Wanted {
        embeddings: true,
        ..Wanted::default()
    };
    // Both images go to the workers at once.
    let (probe, reference) = tokio::join!(
        analyse(&state, body.face_base_64, probe_wanted),
        analyse(&state, body.ref_face_base_64, reference_wanted)
    );
    let (probe, reference) = (probe?, reference?);
    let ratio = state.config.server.secondary_face_ratio;
    let a = probe.single_face(ratio)?;
    let b = reference.single_face(ratio)?;
    if liveness {
        probe.require_live()?;
    }
    let info = state.workers.info();
    let raw = info.metric.compare(
        a.embedding.as_deref().unwrap_or_default(),
        b.embedding.as_deref().unwrap_or_default(),
    );
    let score = round_score(info.calibration.score(raw));
    Ok(Json(CompareResult {
        is_match: score >= min_score,
        similarity_score: score,
    }))
}
