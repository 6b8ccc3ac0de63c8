//! `POST`/`DELETE /collection` (upstream) and the listing extensions.

use axum::extract::{Path, Request, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::extract::{check_collection_name, parse_json, read_body, ApiJson, ApiQuery};
use super::SharedState;
use facegate_core::clock::rfc3339;
use facegate_core::store::{CollectionRecord, Page};

#[derive(Debug, Deserialize, ToSchema)]
pub struct CollectionBody {
    /// Letters, digits, `_`, `-`, `.`; 1–64 characters.
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CollectionCount {
    pub name: String,
    pub num_persons: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CollectionInfo {
    pub name: String,
    pub num_persons: u64,
    /// RFC 3339.
    pub created_at: String,
    /// [facegate] With `digest=true`: SHA-256 (hex) of every person's id, name, metadata,
    /// access rules, fleet version and templates, in id order. Two appliances of a fleet
    /// whose digests of a collection are equal hold the same persons.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

impl From<CollectionRecord> for CollectionInfo {
    fn from(r: CollectionRecord) -> Self {
        Self {
            name: r.name,
            num_persons: r.num_persons,
            created_at: rfc3339(r.created_at_ms),
            digest: None,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CollectionList {
    pub count: usize,
    pub collections: Vec<CollectionInfo>,
}

/// Paging of listings.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ListQuery {
    /// Items to skip (default 0).
    pub skip: Option<usize>,
    /// Items to return, 1–100 (default 20).
    pub take: Option<usize>,
    /// Case-insensitive substring filter.
    pub search: Option<String>,
    /// `ASC` (default) or `DESC`.
    pub order: Option<String>,
    /// [facegate] Add each collection's content digest (`GET /collections` only).
    pub digest: Option<bool>,
}

impl ListQuery {
    pub fn page(&self) -> Result<Page, ApiError> {
        let take = self.take.unwrap_or(20);
        if !(1..=100).contains(&take) {
            return Err(
                ApiError::invalid("take must be between 1 and 100").with_metadata("field", "take")
            );
        }
        let descending = match self
            .order
            .as_deref()
            .map(str::to_ascii_uppercase)
            .as_deref()
        {
            None | Some("ASC") => false,
            Some("DESC") => true,
            Some(_) => {
                return Err(
                    ApiError::invalid("order must be ASC or DESC").with_metadata("field", "order")
                )
            }
        };
        Ok(Page {
            skip: self.skip.unwrap_or(0),
            take,
            search: self.search.clone().unwrap_or_default(),
            descending,
        })
    }
}

#[utoipa::path(post, path = "/collection", tag = "collections", request_body = CollectionBody,
    responses((status = 200, body = CollectionCount),
        (status = 400, description = "ERR_INVALID_COLLECTION_NAME", body = ErrorBody),
        (status = 409, description = "ERR_ALREADY_EXISTS", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn create(
    State(state): State<SharedState>,
    ApiJson(body): ApiJson<CollectionBody>,
) -> Result<Json<CollectionCount>, ApiError> {
    check_collection_name(&body.name)?;
    let record = state
        .blocking(move |s| Ok(s.store.create_collection(&body.name)?))
        .await?;
    tracing::info!(collection = %record.name, "collection created");
    Ok(Json(CollectionCount {
        name: record.name,
        num_persons: 0,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct NameQuery {
    /// The collection (for clients that cannot send a DELETE body).
    pub name: Option<String>,
}

#[utoipa::path(delete, path = "/collection", tag = "collections", request_body = CollectionBody,
    params(NameQuery),
    responses((status = 200, description = "The collection and the number of persons deleted with it", body = CollectionCount),
        (status = 404, description = "ERR_NOT_FOUND", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn delete(
    State(state): State<SharedState>,
    ApiQuery(query): ApiQuery<NameQuery>,
    req: Request,
) -> Result<Json<CollectionCount>, ApiError> {
    let body = read_body(req, &()).await?;
    let name = match query.name {
        Some(n) if body.iter().all(u8::is_ascii_whitespace) => n,
        _ => parse_json::<CollectionBody>(&body)?.name,
    };
    check_collection_name(&name)?;
    let (name, count) = state
        .blocking(move |s| {
            let count = s.store.delete_collection(&name)?;
            Ok((name, count))
        })
        .await?;
    tracing::info!(collection = %name, persons = count, "collection deleted");
    Ok(Json(CollectionCount {
        name,
        num_persons: count,
    }))
}

#[utoipa::path(get, path = "/collection/{name}", tag = "collections",
    params(("name" = String, Path, description = "collection name")),
    responses((status = 200, body = CollectionInfo), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn get_one(
    State(state): State<SharedState>,
    Path(name): Path<String>,
) -> Result<Json<CollectionInfo>, ApiError> {
    check_collection_name(&name)?;
    let record = state
        .blocking(move |s| Ok(s.store.collection(&name)?))
        .await?;
    Ok(Json(record.into()))
}

#[utoipa::path(get, path = "/collections", tag = "collections", params(ListQuery),
    responses((status = 200, body = CollectionList)),
    security(("api_key" = [])))]
pub async fn list(
    State(state): State<SharedState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<CollectionList>, ApiError> {
    let page = query.page()?;
    let digest = query.digest.unwrap_or(false);
    let (count, collections) = state
        .blocking(move |s| {
            let (count, records) = s.store.list_collections(&page)?;
            let mut out = Vec::with_capacity(records.len());
            for record in records {
                let hash = match digest {
                    true => Some(s.store.digest(&record.name)?),
                    false => None,
                };
                let mut info = CollectionInfo::from(record);
                info.digest = hash;
                out.push(info);
            }
            Ok((count, out))
        })
        .await?;
    Ok(Json(CollectionList { count, collections }))
}
