//! The HTTP API (OpenCV FR Server compatible, see `../shared/reference/api.md`): axum routes,
//! `x-api-key` auth, the error envelope, metrics and the OpenAPI document with an offline
//! Swagger UI.

pub mod auth;
pub mod client;
pub mod collections;
pub mod error;
pub mod extract;
pub mod faces;
pub mod metrics;
pub mod openapi;
pub mod ops;
pub mod persons;
pub mod search;
pub mod server;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::Router;
use tracing::Instrument;

use crate::config::Config;
use crate::engine::workers::InferenceWorkers;
use crate::store::Store;
pub use auth::ApiKeys;
pub use error::{ApiError, ErrorCode};

/// Everything a request handler can reach.
pub struct AppState {
    pub config: Config,
    pub store: Arc<Store>,
    pub workers: InferenceWorkers,
    pub keys: ApiKeys,
    pub throttle: auth::AuthThrottle,
    pub metrics: metrics::Metrics,
    pub started: Instant,
    /// Cameras and MQTT, once `facegate serve` has started them.
    pub daemon: std::sync::OnceLock<Arc<crate::daemon::DaemonStatus>>,
}

pub type SharedState = Arc<AppState>;

impl AppState {
    /// Run blocking store work off the executor threads.
    pub async fn blocking<R: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&AppState) -> Result<R, ApiError> + Send + 'static,
    ) -> Result<R, ApiError> {
        let state = self.clone();
        tokio::task::spawn_blocking(move || f(&state))
            .await
            .map_err(|e| ApiError::internal("blocking task", &e))?
    }

    /// `ERR_NOT_FOUND` unless the collection exists: checked before any inference is spent.
    pub async fn require_collection(self: &Arc<Self>, name: &str) -> Result<(), ApiError> {
        let name = name.to_owned();
        self.blocking(move |s| {
            s.store.collection(&name)?;
            Ok(())
        })
        .await
    }
}

/// The complete application.
pub fn router(state: SharedState) -> Router {
    let api = Router::new()
        .route(
            "/collection",
            post(collections::create).delete(collections::delete),
        )
        .route("/collection/{name}", get(collections::get_one))
        .route("/collections", get(collections::list))
        .route(
            "/person",
            put(persons::upsert).delete(persons::delete_by_body),
        )
        .route("/persons", put(persons::bulk_upsert).get(persons::list))
        .route(
            "/person/{collection_name}/{person_id}",
            get(persons::get_one).delete(persons::delete_by_path),
        )
        .route("/face-search", post(search::face_search))
        .route("/multi-face-search", post(search::multi_face_search))
        .route("/compare", post(search::compare))
        .route("/liveness", post(ops::liveness))
        .route("/detect", post(ops::detect))
        .route("/health", get(ops::health))
        .route("/metrics", get(ops::metrics))
        .merge(openapi::swagger_ui())
        .fallback(ops::not_found);
    api.layer(middleware::from_fn_with_state(
        state.clone(),
        auth::require_key,
    ))
    .layer(middleware::from_fn_with_state(state.clone(), observe))
    .layer(DefaultBodyLimit::max(state.config.server.max_body_bytes))
    .with_state(state)
}

/// A span and metrics per request, labelled by route (not by raw path, which would put
/// person ids into labels).
async fn observe(State(state): State<SharedState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let span = tracing::info_span!("request", %method, %route, status = tracing::field::Empty);
    let started = Instant::now();
    let response = next.run(req).instrument(span.clone()).await;
    let status = response.status().as_u16();
    span.record("status", status);
    state
        .metrics
        .observe_request(&method, &route, status, started.elapsed().as_secs_f64());
    tracing::debug!(parent: &span, elapsed_ms = started.elapsed().as_millis() as u64, "done");
    response
}
