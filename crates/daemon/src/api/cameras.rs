//! `GET /cameras/{name}/snapshot` [facegate]: what a camera sees now, with its faces boxed.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::{ApiError, ErrorBody, ErrorCode};
use super::extract::ApiQuery;
use super::SharedState;
use crate::camera::snapshot;

/// Widest snapshot served.
const MAX_WIDTH: u32 = 1920;

#[derive(Debug, Deserialize, IntoParams)]
pub struct SnapshotQuery {
    /// Scale the frame down to at most this many pixels wide, 64–1920 (default 960).
    pub width: Option<u32>,
}

#[utoipa::path(get, path = "/cameras/{name}/snapshot", tag = "cameras",
    params(("name" = String, Path, description = "A camera's name (`cameras.name`)"), SnapshotQuery),
    responses((status = 200, description = "JPEG of the newest frame the pipeline looked at, with a box round each face: green a recognised person, red a refused face, amber deciding. `x-facegate-captured-at` gives its capture time, `x-facegate-faces` the number of faces.", content_type = "image/jpeg", body = Vec<u8>),
        (status = 404, description = "ERR_NOT_FOUND: no such camera, or no frame yet", body = ErrorBody),
        (status = 422, description = "ERR_INVALID_REQUEST: a bad width", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn snapshot(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<SnapshotQuery>,
) -> Result<Response, ApiError> {
    let width = q.width.unwrap_or(960);
    if !(64..=MAX_WIDTH).contains(&width) {
        return Err(
            ApiError::invalid(format!("width must be 64 to {MAX_WIDTH}"))
                .with_metadata("field", "width"),
        );
    }
    let not_found = |what: &str| ApiError::with_message(ErrorCode::ErrNotFound, what.to_owned());
    let frame = state
        .daemon
        .get()
        .and_then(|d| d.camera_status(&name))
        .ok_or_else(|| not_found("No camera of this name (cameras.name)."))?
        .latest
        .get()
        .ok_or_else(|| not_found("The camera has no frame yet."))?;
    let captured =
        facegate_core::clock::rfc3339(facegate_core::clock::unix_ms(frame.captured_wall));
    let faces = frame.faces.len().to_string();
    let jpeg = state
        .blocking(move |_| {
            snapshot::render_jpeg(&frame, width).map_err(|e| ApiError::internal("snapshot", &e))
        })
        .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/jpeg".to_owned()),
            (header::CACHE_CONTROL, "no-store".to_owned()),
            (
                header::HeaderName::from_static("x-facegate-captured-at"),
                captured,
            ),
            (header::HeaderName::from_static("x-facegate-faces"), faces),
        ],
        jpeg,
    )
        .into_response())
}
