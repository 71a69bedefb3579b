//! Mock servers for local runs and tests, speaking the real services' HTTP
//! contracts over real sockets.

pub mod bedrock;
pub mod faults;
pub mod llamaparse;
pub mod openai;
pub mod rerank;
pub mod s3_listing;

/// Whether `headers` carry `Authorization: Bearer <key>`: exactly `api_key`
/// if one is configured, any non-empty key otherwise (as the real services
/// refuse a missing key).
pub fn bearer_authorised(headers: &axum::http::HeaderMap, api_key: Option<&str>) -> bool {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    match api_key {
        Some(key) => bearer == key,
        None => !bearer.is_empty(),
    }
}
