//! `GET /events` and `GET /events/{event_id}` [facegate]: the audit trail of decisions;
//! `GET /events/stream`: decisions as they are taken.

use std::convert::Infallible;

use axum::extract::{Path, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::Json;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody, ErrorCode};
use super::extract::{cursor_page, encode_base64, ApiQuery};
use super::SharedState;
use facegate_core::audit::{AuditRecord, Filter};

/// Most records in one page.
const MAX_LIMIT: usize = 500;

#[derive(Debug, Deserialize, IntoParams)]
pub struct EventsQuery {
    /// From this instant on (RFC 3339), by the decision's capture time.
    pub since: Option<String>,
    /// Before this instant (RFC 3339).
    pub until: Option<String>,
    pub camera: Option<String>,
    pub door: Option<String>,
    pub person_id: Option<String>,
    /// Decision type: match, unknown, spoof, undetermined.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub kind: Option<String>,
    /// Whether the door opened.
    pub granted: Option<bool>,
    /// Records per page, 1–500 (default 50).
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// One page of records, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventPage {
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<AuditRecord>,
    /// Pass as `cursor` for the next (older) page; null on the last page.
    pub next_cursor: Option<String>,
}

/// One record with its thumbnail.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventOut {
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub record: AuditRecord,
    /// Base64 JPEG of the face, when kept (`events.keep_thumbnails`).
    pub thumbnail: Option<String>,
}

fn log(state: &SharedState) -> Result<&facegate_core::audit::EventLog, ApiError> {
    state.audit.as_deref().ok_or_else(|| {
        ApiError::with_message(
            ErrorCode::ErrNotFound,
            "The event log is off (events.enabled = false).",
        )
    })
}

fn instant(field: &str, text: &Option<String>) -> Result<Option<i64>, ApiError> {
    text.as_ref()
        .map(|t| {
            t.parse::<jiff::Timestamp>()
                .map(|t| t.as_millisecond())
                .map_err(|_| {
                    ApiError::invalid(format!(
                        "{field} {t:?} is not an RFC 3339 time such as 2026-12-01T08:00:00Z"
                    ))
                    .with_metadata("field", field)
                })
        })
        .transpose()
}

#[utoipa::path(get, path = "/events", tag = "events", params(EventsQuery),
    responses((status = 200, body = EventPage),
        (status = 404, description = "ERR_NOT_FOUND: the event log is off", body = ErrorBody),
        (status = 422, description = "ERR_INVALID_REQUEST: a bad time, limit or cursor", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list(
    State(state): State<SharedState>,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Json<EventPage>, ApiError> {
    log(&state)?;
    let (limit, before) = cursor_page(q.limit, q.cursor.as_deref(), MAX_LIMIT)?;
    let filter = Filter {
        since_ms: instant("since", &q.since)?,
        until_ms: instant("until", &q.until)?,
        camera: q.camera,
        door: q.door,
        person_id: q.person_id,
        kind: q.kind,
        granted: q.granted,
    };
    let (events, next) = state
        .blocking(move |s| {
            let log = s.audit.as_deref().expect("checked above");
            log.query(&filter, limit, before)
                .map_err(|e| ApiError::internal("event log", &e))
        })
        .await?;
    Ok(Json(EventPage {
        events,
        next_cursor: next.map(|n| n.to_string()),
    }))
}

#[utoipa::path(get, path = "/events/{event_id}", tag = "events",
    params(("event_id" = String, Path, description = "The event's id (UUID v7)")),
    responses((status = 200, body = EventOut), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn get_one(
    State(state): State<SharedState>,
    Path(event_id): Path<String>,
) -> Result<Json<EventOut>, ApiError> {
    log(&state)?;
    let found = state
        .blocking(move |s| {
            let log = s.audit.as_deref().expect("checked above");
            log.get(&event_id)
                .map_err(|e| ApiError::internal("event log", &e))
        })
        .await?;
    match found {
        Some((record, thumb)) => Ok(Json(EventOut {
            record,
            thumbnail: thumb.map(|t| encode_base64(&t)),
        })),
        None => Err(ApiError::with_message(
            ErrorCode::ErrNotFound,
            "No such event in the log (never recorded, or dropped by events.max_events / max_age_days).",
        )),
    }
}

/// `GET /events/stream` [facegate]: every decision as it is taken, as Server-Sent Events
/// (`event: decision`, `data:` the event JSON without its thumbnail); `event: lagged` with the
/// number of events a slow reader missed; a `:` comment every 5 s while quiet. Keyed like every call: a browser reads it with
/// `fetch` and the `x-api-key` header (never a key in the URL).
#[utoipa::path(get, path = "/events/stream", tag = "events",
    responses((status = 200, description = "text/event-stream of decisions", content_type = "text/event-stream", body = String)),
    security(("api_key" = [])))]
pub async fn stream(
    State(state): State<SharedState>,
) -> Sse<impl futures_util::Stream<Item = Result<SseEvent, Infallible>>> {
    let (events, closed) = state.live.subscribe();
    let stream =
        futures_util::stream::unfold((events, closed), |(mut events, mut closed)| async move {
            if *closed.borrow() {
                return None;
            }
            let event = tokio::select! {
                received = events.recv() => match received {
                    Ok(json) => SseEvent::default().event("decision").data(&*json),
                    Err(RecvError::Lagged(missed)) => {
                        SseEvent::default().event("lagged").data(missed.to_string())
                    }
                    Err(RecvError::Closed) => return None,
                },
                _ = closed.changed() => return None,
            };
            Some((Ok(event), (events, closed)))
        });
    // A comment line every 5 s: proxies and browsers keep the quiet stream open, and a reader
    // that went away is noticed at the next write.
    Sse::new(stream).keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(5)))
}
