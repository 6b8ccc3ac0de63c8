//! The one error type of the API: a documented code, its message and HTTP status, and the
//! `{"code", "message", "metadata"}` envelope (api.md §1–2). Internal details are logged,
//! never sent.

use std::collections::BTreeMap;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use facegate_core::engine::frame::DecodeError;
use facegate_core::engine::EngineError;
use facegate_core::store::StoreError;

/// Every error code of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    ErrApiKeyNotPresent,
    ErrApiKeyNotValid,
    ErrInvalidCollectionName,
    ErrAlreadyExists,
    ErrNotFound,
    ErrDatabaseError,
    ErrFaceNotDetected,
    ErrBase64ImageCannotBeDecoded,
    ErrLivenessError,
    ErrMultipleFaces,
    ErrDuplicatePerson,
    ErrFaceDoesNotMatchPerson,
    ErrInvalidRequest,
    ErrPayloadTooLarge,
    ErrImageTooLarge,
    ErrRateLimited,
    ErrBusy,
    ErrRequestTimeout,
    ErrInternal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ErrApiKeyNotPresent => "ERR_API_KEY_NOT_PRESENT",
            ErrorCode::ErrApiKeyNotValid => "ERR_API_KEY_NOT_VALID",
            ErrorCode::ErrInvalidCollectionName => "ERR_INVALID_COLLECTION_NAME",
            ErrorCode::ErrAlreadyExists => "ERR_ALREADY_EXISTS",
            ErrorCode::ErrNotFound => "ERR_NOT_FOUND",
            ErrorCode::ErrDatabaseError => "ERR_DATABASE_ERROR",
            ErrorCode::ErrFaceNotDetected => "ERR_FACE_NOT_DETECTED",
            ErrorCode::ErrBase64ImageCannotBeDecoded => "ERR_BASE64_IMAGE_CANNOT_BE_DECODED",
            ErrorCode::ErrLivenessError => "ERR_LIVENESS_ERROR",
            ErrorCode::ErrMultipleFaces => "ERR_MULTIPLE_FACES",
            ErrorCode::ErrDuplicatePerson => "ERR_DUPLICATE_PERSON",
            ErrorCode::ErrFaceDoesNotMatchPerson => "ERR_FACE_DOES_NOT_MATCH_PERSON",
            ErrorCode::ErrInvalidRequest => "ERR_INVALID_REQUEST",
            ErrorCode::ErrPayloadTooLarge => "ERR_PAYLOAD_TOO_LARGE",
            ErrorCode::ErrImageTooLarge => "ERR_IMAGE_TOO_LARGE",
            ErrorCode::ErrRateLimited => "ERR_RATE_LIMITED",
            ErrorCode::ErrBusy => "ERR_BUSY",
            ErrorCode::ErrRequestTimeout => "ERR_REQUEST_TIMEOUT",
            ErrorCode::ErrInternal => "ERR_INTERNAL",
        }
    }

    pub fn status(self) -> StatusCode {
        use ErrorCode::*;
        match self {
            ErrInvalidCollectionName
            | ErrBase64ImageCannotBeDecoded
            | ErrFaceNotDetected
            | ErrMultipleFaces
            | ErrLivenessError => StatusCode::BAD_REQUEST,
            ErrApiKeyNotPresent => StatusCode::UNAUTHORIZED,
            ErrApiKeyNotValid => StatusCode::FORBIDDEN,
            ErrNotFound => StatusCode::NOT_FOUND,
            ErrAlreadyExists | ErrDuplicatePerson => StatusCode::CONFLICT,
            ErrPayloadTooLarge | ErrImageTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrInvalidRequest | ErrFaceDoesNotMatchPerson => StatusCode::UNPROCESSABLE_ENTITY,
            ErrRateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrBusy => StatusCode::SERVICE_UNAVAILABLE,
            ErrRequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrDatabaseError | ErrInternal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The documented message (upstream wording where upstream has the code).
    pub fn message(self) -> &'static str {
        use ErrorCode::*;
        match self {
            ErrApiKeyNotPresent => "The API key is missing from the request.",
            ErrApiKeyNotValid => "The API key is not valid.",
            ErrInvalidCollectionName => {
                "Collection names can only contain alphanumeric characters, underscores, hyphens, and periods."
            }
            ErrAlreadyExists => "Another entity already exists with the same ID.",
            ErrNotFound => "The requested entity could not be found.",
            ErrDatabaseError => {
                "An error occurred while connecting with the database, please retry your request later."
            }
            ErrFaceNotDetected => "A face could not be detected in the image(s).",
            ErrBase64ImageCannotBeDecoded => {
                "The posted Base64 image(s) could not be decoded as JPEG/PNG bytes."
            }
            ErrLivenessError => {
                "A liveness error occurred. Please check the supplied image and the error metadata."
            }
            ErrMultipleFaces => {
                "More than one face was detected where exactly one is required."
            }
            ErrDuplicatePerson => {
                "This face is already enrolled in the collection under another person_id."
            }
            ErrFaceDoesNotMatchPerson => {
                "The face does not look like the person's enrolled faces."
            }
            ErrInvalidRequest => "The request is not valid.",
            ErrPayloadTooLarge => "The request body is larger than the server accepts.",
            ErrImageTooLarge => "The image is larger than the server accepts.",
            ErrRateLimited => "Too many requests; retry later.",
            ErrBusy => "The server is busy; retry later.",
            ErrRequestTimeout => "The request took too long.",
            ErrInternal => "An internal error occurred.",
        }
    }
}

/// The error envelope as sent.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    #[schema(value_type = String, example = "ERR_NOT_FOUND")]
    pub code: ErrorCode,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<BTreeMap<String, serde_json::Value>>,
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub metadata: Option<BTreeMap<String, serde_json::Value>>,
    pub retry_after_s: Option<u32>,
}

impl ApiError {
    pub fn new(code: ErrorCode) -> Self {
        Self {
            code,
            message: code.message().to_owned(),
            metadata: None,
            retry_after_s: None,
        }
    }

    /// A facegate code with a message that says what exactly was wrong.
    pub fn with_message(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            ..Self::new(code)
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::with_message(ErrorCode::ErrInvalidRequest, message)
    }

    pub fn with_metadata(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.metadata
            .get_or_insert_with(BTreeMap::new)
            .insert(key.to_owned(), value.into());
        self
    }

    pub fn busy(retry_after_s: u32) -> Self {
        Self {
            retry_after_s: Some(retry_after_s),
            ..Self::new(ErrorCode::ErrBusy)
        }
    }

    /// An unexpected failure: logged in full, answered without detail.
    pub fn internal(context: &str, err: &dyn std::fmt::Display) -> Self {
        tracing::error!(%err, "{context}");
        Self::new(ErrorCode::ErrInternal)
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code,
            message: self.message.clone(),
            metadata: self.metadata.clone(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.code.status(), Json(self.body())).into_response();
        if let Some(s) = self.retry_after_s {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::CollectionNotFound
            | StoreError::PersonNotFound
            | StoreError::FaceNotFound => ApiError::new(ErrorCode::ErrNotFound),
            StoreError::TooManyFaces { max } => {
                ApiError::with_message(ErrorCode::ErrInvalidRequest, format!("{e}."))
                    .with_metadata("max_faces_per_person", max)
            }
            StoreError::LastFace | StoreError::NoFace => {
                ApiError::with_message(ErrorCode::ErrInvalidRequest, format!("{e}."))
            }
            StoreError::CollectionExists => ApiError::new(ErrorCode::ErrAlreadyExists),
            StoreError::Full { .. } => {
                tracing::error!(err = %e, "store full");
                ApiError::with_message(ErrorCode::ErrDatabaseError, format!("{e}."))
            }
            other => {
                tracing::error!(err = %other, "store failure");
                ApiError::new(ErrorCode::ErrDatabaseError)
            }
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Decode(
                DecodeError::TooLarge { .. }
                | DecodeError::TooManyBytes { .. }
                | DecodeError::TooNarrow { .. }
                | DecodeError::DecoderLimit { .. },
            ) => ApiError::with_message(ErrorCode::ErrImageTooLarge, e.to_string()),
            // Decodes fine but is too small to hold a face the detector could find.
            EngineError::Decode(DecodeError::TooSmall { .. }) => {
                ApiError::new(ErrorCode::ErrFaceNotDetected)
            }
            EngineError::Decode(_) => ApiError::new(ErrorCode::ErrBase64ImageCannotBeDecoded),
            other => ApiError::internal("inference failed", &other),
        }
    }
}
