//! `POST /v1/uploads`: a presigned S3 `PUT` for `uploads/<tenant>/<name>`.
//! The upload itself goes straight to S3 and its notification starts the
//! pipeline, as any other upload does; the API never carries the bytes.
//! Metadata given with the request is written as the document's sidecar,
//! read whether it lands before or after the upload.

use crate::auth::Tenant;
use crate::error::ApiError;
use crate::state::Api;
use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use docpipe_aws::s3::{self, PresignedPut};
use docpipe_core::domain::format::Format;
use docpipe_core::domain::ids::document_id;
use docpipe_core::domain::keys::{SIDECAR_SUFFIX, UploadKey, sidecar_key, sidecar_target};
use docpipe_core::domain::metadata::{self, Attributes};
use docpipe_core::store::sidecars;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use uuid::Uuid;

/// S3 keys are at most 1024 bytes.
const MAX_KEY_BYTES: usize = 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadRequest {
    /// The file's name (may contain `/` for folders) under the tenant's folder.
    name: String,
    /// The file's exact size in bytes: the URL accepts only this many.
    size: u64,
    /// Attributes to filter searches by, written as the document's sidecar
    /// (replacing any it has); without them its sidecar is left as it is.
    metadata: Option<Attributes>,
}

#[derive(Debug, Serialize)]
pub struct Upload {
    /// The document the upload becomes (the same id for every upload of this name).
    document_id: Uuid,
    key: String,
    /// `PUT` the file's bytes here, with these headers, before `expires_at`.
    upload: PresignedPut,
    /// Seconds since the Unix epoch.
    expires_at: u64,
}

pub(super) async fn create(
    State(api): State<Arc<Api>>,
    Tenant(tenant): Tenant,
    request: Result<Json<UploadRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<Upload>), ApiError> {
    let Json(request) = request?;
    let key = tenant.upload_path(&request.name);
    if key.len() > MAX_KEY_BYTES {
        return Err(ApiError::bad_request(format!(
            "name is too long: the key would be {} bytes; at most {MAX_KEY_BYTES}",
            key.len()
        )));
    }
    let invalid = |e: docpipe_core::Rejection| ApiError::bad_request(format!("name: {e}"));
    UploadKey::parse(&key).map_err(invalid)?;
    // In any case: `A.PDF.METADATA.JSON` is no document either.
    if sidecar_target(&key.to_ascii_lowercase()).is_some() {
        return Err(ApiError::bad_request(format!(
            "name: names ending {SIDECAR_SUFFIX} are metadata sidecars; give a document's \
             attributes in `metadata` instead"
        )));
    }
    Format::from_key(&key).map_err(invalid)?;
    if let Some(attributes) = &request.metadata {
        metadata::check(attributes).map_err(|e| ApiError::bad_request(format!("metadata: {e}")))?;
    }
    let presigner = &api.presigner;
    let limit = presigner.max_file_bytes;
    if request.size == 0 {
        return Err(ApiError::bad_request("size must be at least 1 byte"));
    }
    if request.size > limit {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("size is {} bytes; at most {limit}", request.size),
        ));
    }
    if let Some(attributes) = &request.metadata {
        let sidecar = sidecar_key(&key);
        // Listed first: a sidecar whose upload never comes is removed once
        // the URL has expired (the sweeper); without the entry it would stay.
        let client = api.client().await?;
        sidecars::expect_upload(&client, &sidecar, &key, &tenant, presigner.ttl).await?;
        let bytes = metadata::sidecar_bytes(attributes);
        api.pipeline.blobs.put(&sidecar, bytes.into()).await?;
    }
    let upload = s3::presign_put(
        &presigner.s3,
        &presigner.bucket,
        &key,
        request.size,
        presigner.ttl,
    )
    .await?;
    let expires_at = (SystemTime::now() + presigner.ttl)
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    Ok((
        StatusCode::CREATED,
        Json(Upload {
            document_id: document_id(&tenant, &key),
            key,
            upload,
            expires_at,
        }),
    ))
}
