//! Operations and face utilities: `GET /health`, `GET /metrics`, `POST /detect`,
//! `POST /liveness`, and the 404 answer for unknown routes.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody, ErrorCode};
use super::extract::{encode_base64, ApiJson};
use super::face_json::DetectedFace;
use super::faces::{analyse, Wanted};
use super::SharedState;
use facegate_core::config::PublicHealth;
use facegate_core::engine::liveness::Check;

#[derive(Debug, Deserialize, ToSchema)]
pub struct DetectBody {
    pub image_base_64: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct LivenessBody {
    pub face_base_64: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LivenessMetadata {
    /// `OK` or the upstream liveness code.
    pub code: String,
    #[schema(value_type = Vec<Object>)]
    pub checks: Vec<Check>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LivenessResult {
    pub is_live: bool,
    pub liveness_score: f32,
    pub metadata: LivenessMetadata,
}

#[utoipa::path(post, path = "/detect", tag = "faces", request_body = DetectBody,
    responses((status = 200, description = "Every face, best first ([] when none)", body = Vec<DetectedFace>),
        (status = 400, description = "ERR_BASE64_IMAGE_CANNOT_BE_DECODED", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn detect(
    State(state): State<SharedState>,
    ApiJson(body): ApiJson<DetectBody>,
) -> Result<Json<Vec<DetectedFace>>, ApiError> {
    let wanted = Wanted {
        thumbnails: true,
        ..Wanted::default()
    };
    let analysis = analyse(&state, body.image_base_64, wanted).await?;
    let size = (analysis.width, analysis.height);
    Ok(Json(
        analysis
            .faces
            .into_iter()
            .map(|f| DetectedFace {
                thumbnail_base_64: f.thumbnail.map(|t| encode_base64(&t)),
                ..DetectedFace::new(&f.bbox, &f.points, f.score, size)
            })
            .collect(),
    ))
}

#[utoipa::path(post, path = "/liveness", tag = "faces", request_body = LivenessBody,
    responses((status = 200, description = "The verdict and every check with its value and limit", body = LivenessResult),
        (status = 400, description = "ERR_BASE64_IMAGE_CANNOT_BE_DECODED", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn liveness(
    State(state): State<SharedState>,
    ApiJson(body): ApiJson<LivenessBody>,
) -> Result<Json<LivenessResult>, ApiError> {
    let wanted = Wanted {
        liveness: true,
        ..Wanted::default()
    };
    let analysis = analyse(&state, body.face_base_64, wanted).await?;
    let v = analysis
        .liveness
        .ok_or_else(|| ApiError::internal("liveness", &"not computed"))?;
    Ok(Json(LivenessResult {
        is_live: v.is_live,
        liveness_score: v.liveness_score,
        metadata: LivenessMetadata {
            code: v.code.as_str().to_owned(),
            checks: v.checks,
        },
    }))
}

#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "Status, version, models, store, camera and MQTT state", body = Object)))]
pub async fn health(
    State(state): State<SharedState>,
    auth: Option<axum::Extension<super::auth::Authenticated>>,
) -> impl IntoResponse {
    let authenticated = auth.is_some_and(|a| a.0 .0);
    if !authenticated && state.config.server.public_health != PublicHealth::Full {
        // Without a key only whether it is up: the rest (cameras, store path, broker state)
        // helps an attacker more than a monitor.
        return Json(json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}));
    }
    let info = state.workers.info();
    let (collections, persons) = state.store.counts();
    let auth = if state.keys.is_disabled() {
        "DISABLED (--insecure-no-auth): every client has full access"
    } else {
        "api_key"
    };
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "auth": auth,
        "uptime_s": state.started.elapsed().as_secs(),
        "transport": super::listener::transport_json(&state.config.server),
        "models": {
            "embedder": info.embedder,
            "fingerprint": info.fingerprint,
            "dimension": info.dimension,
            "providers": info.providers.iter().map(|(m, p)| json!({"model": m, "provider": p})).collect::<Vec<_>>(),
        },
        "inference": {
            "workers": state.workers.workers(),
            "queue_capacity": state.workers.queue_capacity(),
            "in_flight": state.workers.in_flight(),
        },
        "store": {
            "data_dir": state.store.dir().display().to_string(),
            "collections": collections,
            "persons": persons,
            "index_bytes": state.store.index_bytes(),
            // The LMDB file's length: the pages in use (the map is only address space).
            "file_bytes": std::fs::metadata(state.store.dir().join("data.mdb")).map(|m| m.len()).ok(),
        },
        "strangers": state.strangers.as_ref().map(|s| json!({"count": s.count()}))
            .unwrap_or_else(|| json!({"enabled": false})),
        "cameras": state.daemon.get().map(|d| d.cameras_json()).unwrap_or_else(|| json!([])),
        "mqtt": state.daemon.get().map(|d| d.mqtt_json()).unwrap_or_else(|| json!({"enabled": false})),
        "fleet": state.daemon.get().map(|d| d.fleet_json(&state.store)).unwrap_or_else(|| json!({"enabled": false})),
        // What a door controller trusts: access messages are signed with this key.
        "access": state.daemon.get().map(|d| json!({
            "public_key": d.public_key(),
            "algorithm": "ed25519",
            "grant_ttl_s": state.config.access.grant_ttl_s,
            "schedules": state.config.access.schedules.keys().collect::<Vec<_>>(),
        })).unwrap_or(serde_json::Value::Null),
    }))
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "application/openmetrics-text")))]
pub async fn metrics(State(state): State<SharedState>) -> impl IntoResponse {
    let (collections, persons) = state.store.counts();
    if let Some(d) = state.daemon.get() {
        d.update_metrics(&state.metrics.daemon, &state.store);
    }
    let text = state.metrics.render(
        collections,
        persons,
        state.workers.in_flight(),
        state.store.index_bytes(),
    );
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
}

pub async fn not_found() -> ApiError {
    ApiError::with_message(ErrorCode::ErrNotFound, "No such endpoint.")
}
