//! An error as the API answers it: a status and `{"error":{"code","message"}}`.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::time::{Duration, SystemTime};
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Seconds to wait before asking again (`Retry-After`), for a 429.
    retry_after: Option<u64>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 429: come back in `wait` (at least a second).
    pub(crate) fn too_many(code: &'static str, message: impl Into<String>, wait: Duration) -> Self {
        ApiError {
            retry_after: Some(wait.as_secs_f64().ceil().max(1.0) as u64),
            ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, message)
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    pub(crate) fn code(&self) -> &'static str {
        self.code
    }

    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn retry_after(&self) -> Option<u64> {
        self.retry_after
    }

    pub(crate) fn not_found(what: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no such {what}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        // Kept with the answer, for routes that answer errors in another
        // protocol's shape (Bedrock's: `bedrock::errors`).
        response.extensions_mut().insert(self);
        response
    }
}

impl From<docpipe_core::Error> for ApiError {
    fn from(error: docpipe_core::Error) -> Self {
        use docpipe_core::Rejection;
        match &error {
            // A provider refused the deployment's call: not the caller's
            // fault, and its words are for the operators (the log).
            docpipe_core::Error::Rejected(
                Rejection::EmbeddingRejected { .. }
                | Rejection::EmbeddingInvalid { .. }
                | Rejection::RerankRejected { .. },
            ) => {
                tracing::error!(%error, "a provider refused the request");
                return ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "provider_refused",
                    "a search provider refused the request; the operators are told",
                );
            }
            // The request's own data (e.g. the database refused a value of it).
            docpipe_core::Error::Rejected(reason) => {
                return ApiError::bad_request(reason.to_string());
            }
            // The caller's spending (or the deployment's) is stopped for now.
            docpipe_core::Error::Waiting(wait) => {
                let left = wait
                    .until
                    .duration_since(SystemTime::now())
                    .unwrap_or_default();
                return ApiError::too_many("spending_stopped", wait.reason.clone(), left);
            }
            docpipe_core::Error::Transient(_) => {}
        }
        tracing::error!(%error, "request failed");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the service could not answer; try again",
        )
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let code = match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => "too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            _ => "bad_request",
        };
        ApiError::new(rejection.status(), code, rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::bad_request(rejection.body_text())
    }
}

/// A UUID from a path or query, or a 400 naming `what` it should have been.
pub(crate) fn parse_id(text: &str, what: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(text).map_err(|_| ApiError::bad_request(format!("{what} must be a UUID")))
}
