//! Errors as AWS's JSON protocols carry them: the type in
//! `x-amzn-ErrorType`, the words in `{"message": …}`, and the status the
//! Bedrock Agent Runtime service model gives the type, so that the SDKs
//! raise their modelled exceptions (`client.exceptions.ValidationException`).

use crate::error::ApiError;
use axum::Json;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The service model's exception for a docpipe error, and its status.
fn exception(error: &ApiError) -> (&'static str, StatusCode) {
    match (error.status().as_u16(), error.code()) {
        (401 | 403, _) => ("AccessDeniedException", StatusCode::FORBIDDEN),
        (404, _) => ("ResourceNotFoundException", StatusCode::NOT_FOUND),
        (409, _) => ("ConflictException", StatusCode::CONFLICT),
        (429, "search_slots_full") => ("ServiceQuotaExceededException", StatusCode::BAD_REQUEST),
        (429, _) => ("ThrottlingException", StatusCode::TOO_MANY_REQUESTS),
        (_, "provider_refused" | "unavailable") => {
            ("DependencyFailedException", StatusCode::FAILED_DEPENDENCY)
        }
        (400..=499, _) => ("ValidationException", StatusCode::BAD_REQUEST),
        _ => ("InternalServerException", StatusCode::INTERNAL_SERVER_ERROR),
    }
}

/// `error` as AWS answers it; a wait (`Retry-After`) is kept.
pub fn aws_response(error: &ApiError) -> Response {
    let (kind, status) = exception(error);
    let mut response = (
        status,
        Json(serde_json::json!({"message": error.message()})),
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert("x-amzn-errortype", HeaderValue::from_static(kind));
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(secs) = error.retry_after() {
        headers.insert(axum::http::header::RETRY_AFTER, secs.into());
    }
    response
}

/// Whether `path` is a Bedrock route's: its errors are AWS's.
fn is_bedrock(path: &str) -> bool {
    path.starts_with("/knowledgebases/") || path == "/v1/retrieve"
}

/// A Bedrock route's errors (from any layer: limits, authentication, the
/// handler) in AWS's shape.
pub async fn aws_errors(request: Request, next: Next) -> Response {
    let bedrock = is_bedrock(request.uri().path());
    let mut response = next.run(request).await;
    match response.extensions_mut().remove::<ApiError>() {
        Some(error) if bedrock => aws_response(&error),
        _ => response,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_docpipe_error_is_one_of_the_service_model_s_exceptions() {
        let cases = [
            (ApiError::bad_request("x"), "ValidationException", 400),
            (
                ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "x"),
                "AccessDeniedException",
                403,
            ),
            (
                ApiError::not_found("knowledge base"),
                "ResourceNotFoundException",
                404,
            ),
            (
                ApiError::too_many("rate_limited", "x", std::time::Duration::from_secs(3)),
                "ThrottlingException",
                429,
            ),
            (
                ApiError::too_many("search_slots_full", "x", std::time::Duration::from_secs(1)),
                "ServiceQuotaExceededException",
                400,
            ),
            (
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "x"),
                "DependencyFailedException",
                424,
            ),
            (
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "x"),
                "InternalServerException",
                500,
            ),
            (
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", "x"),
                "ValidationException",
                400,
            ),
        ];
        for (error, kind, status) in cases {
            let response = aws_response(&error);
            assert_eq!(response.status().as_u16(), status, "{kind}");
            assert_eq!(response.headers()["x-amzn-errortype"], kind);
        }
        let throttled = aws_response(&ApiError::too_many(
            "rate_limited",
            "x",
            std::time::Duration::from_secs(3),
        ));
        assert_eq!(throttled.headers()["retry-after"], "3");
    }
}
