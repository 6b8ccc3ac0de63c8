//! The HTTP API (OpenCV FR Server compatible, reference in `docs/api.md`): axum routes,
//! `x-api-key` auth, the error envelope, metrics and the OpenAPI document with an offline
//! Swagger UI.

pub mod access_rules;
pub mod auth;
pub mod cameras;
pub mod client;
pub mod collections;
pub mod console;
pub mod error;
pub mod events;
pub mod extract;
pub mod face_json;
pub mod faces;
pub mod listener;
pub mod metrics;
pub mod openapi;
pub mod ops;
pub mod person_faces;
pub mod persons;
pub mod search;
pub mod server;
pub mod unknowns;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, post, put};
use axum::Router;
use tracing::Instrument;

pub use auth::ApiKeys;
pub use error::{ApiError, ErrorCode};
use facegate_core::config::Config;
use facegate_core::engine::workers::InferenceWorkers;
use facegate_core::store::Store;

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
    /// The audit trail (`events.enabled`), written by the cameras, read by `GET /events`.
    pub audit: Option<Arc<facegate_core::audit::EventLog>>,
    /// Persistent ids for unknown faces (`strangers.enabled`), written by the cameras.
    pub strangers: Option<Arc<facegate_core::strangers::Strangers>>,
    /// Decisions as they happen, for `GET /events/stream`.
    pub live: Arc<crate::daemon::live_feed::LiveFeed>,
}

pub type SharedState = Arc<AppState>;

impl AppState {
    /// What the cameras write beside the outbox (for `Daemon::start`).
    pub fn outputs(&self) -> crate::daemon::DecisionOutputs {
        crate::daemon::DecisionOutputs {
            audit: self.audit.clone(),
            strangers: self.strangers.clone(),
            live: self.live.clone(),
        }
    }

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

/// Stored images for a listing or search response: thumbnails always, full enrolment photos
/// only when `include_images` asks, all within `server.max_response_mib` shared by `parts`
/// searches.
pub fn response_images(
    state: &AppState,
    include_images: Option<bool>,
    parts: usize,
) -> facegate_core::store::Images {
    facegate_core::store::Images {
        thumbnails: true,
        full: include_images.unwrap_or(false),
        max_bytes: state.config.server.max_response_mib.saturating_mul(1 << 20) / parts.max(1),
    }
}

/// A JSON answer, with `x-facegate-images-omitted` when the response budget left images out.
pub fn json_with_omitted(body: impl serde::Serialize, omitted: usize) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut response = axum::Json(body).into_response();
    if omitted > 0 {
        response
            .headers_mut()
            .insert("x-facegate-images-omitted", omitted.into());
    }
    response
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
        .route("/events", get(events::list))
        .route("/events/stream", get(events::stream))
        .route("/events/{event_id}", get(events::get_one))
        .route("/cameras/{name}/snapshot", get(cameras::snapshot))
        .route("/unknowns", get(unknowns::list))
        .route(
            "/unknowns/{unknown_id}",
            get(unknowns::get_one).delete(unknowns::delete),
        )
        .route("/unknowns/{unknown_id}/enrol", post(unknowns::enrol))
        .route("/unknowns/{unknown_id}/ignore", post(unknowns::ignore))
        .route("/ui", get(console::page))
        .route("/ui/", get(console::page))
        .route("/ui/app.js", get(console::script))
        .route("/ui/app.css", get(console::style))
        .route(
            "/person/{collection_name}/{person_id}",
            get(persons::get_one)
                .delete(persons::delete_by_path)
                .patch(persons::edit),
        )
        .route(
            "/person/{collection_name}/{person_id}/faces",
            get(person_faces::list).post(person_faces::add),
        )
        .route(
            "/person/{collection_name}/{person_id}/faces/{face_id}",
            delete(person_faces::delete),
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
        request_deadline,
    ))
    .layer(middleware::from_fn_with_state(
        state.clone(),
        auth::require_key,
    ))
    .layer(middleware::from_fn_with_state(state.clone(), observe))
    .layer(DefaultBodyLimit::max(state.config.server.max_body_bytes))
    .with_state(state)
}

/// A span and metrics per request, labelled by route (not by raw path, which would put
/// person ids into labels) and by a closed set of methods, so no client can grow the label set.
async fn observe(State(state): State<SharedState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = metrics::method_label(req.method());
    let span = tracing::info_span!("request", %method, %route, status = tracing::field::Empty);
    let started = Instant::now();
    let response = next.run(req).instrument(span.clone()).await;
    // Refused for want of a key: one label set, created at start, whatever the client sent.
    let route = if response.extensions().get::<auth::AuthRejected>().is_some() {
        metrics::UNAUTHENTICATED_ROUTE.to_owned()
    } else {
        route
    };
    let status = response.status().as_u16();
    span.record("status", status);
    state
        .metrics
        .observe_request(method, &route, status, started.elapsed().as_secs_f64());
    tracing::debug!(parent: &span, elapsed_ms = started.elapsed().as_millis() as u64, "done");
    response
}

/// How many times `server.request_timeout_s` a bulk enrolment (`PUT /persons`) may take.
pub const BULK_DEADLINE_FACTOR: u32 = 10;

/// The whole-request budget (`server.request_timeout_s`), body upload included: a client that
/// trickles its body cannot hold a connection and a handler forever.
async fn request_deadline(State(state): State<SharedState>, req: Request, next: Next) -> Response {
    let mut limit = state.config.server.request_timeout_s;
    // A live event stream lasts as long as the page that reads it.
    if limit == 0 || req.uri().path() == "/events/stream" {
        return next.run(req).await;
    }
    if req.method() == axum::http::Method::PUT && req.uri().path() == "/persons" {
        // A bulk enrolment of up to max_bulk_items photos is long, legitimate work.
        limit = limit.saturating_mul(BULK_DEADLINE_FACTOR);
    }
    match tokio::time::timeout(std::time::Duration::from_secs(limit as u64), next.run(req)).await {
        Ok(response) => response,
        Err(_) => {
            use axum::response::IntoResponse;
            tracing::warn!(limit_s = limit, "request timed out");
            ApiError::with_message(
                ErrorCode::ErrRequestTimeout,
                format!("The request took longer than {limit} s (server.request_timeout_s)."),
            )
            .into_response()
        }
    }
}
