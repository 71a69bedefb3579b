//! The blob store in S3, presigned uploads and the bucket's health. An
//! emulator is reached the same way, through `AWS_ENDPOINT_URL`; nothing
//! here knows it.

use crate::blob::{
    BlobStore, FolderPage, Listed, ListedPage, MAX_LIST_PAGE, ObjectInfo, Parts, check_size,
};
use crate::transient;
use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::EncodingType;
use bytes::Bytes;
use docpipe_core::error::{Error, Rejection, Result};
use std::time::Duration;

/// An S3 client; `force_path_style` for emulators (see [`docpipe_core::settings::AwsConfig`]).
pub fn s3_client(sdk: &aws_config::SdkConfig, force_path_style: bool) -> aws_sdk_s3::Client {
    let s3 = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(force_path_style)
        .build();
    aws_sdk_s3::Client::from_conf(s3)
}

/// A key as a listing asked with `encoding-type=url` gives it: S3 encodes
/// keys so that any (one with a control character, which XML cannot carry)
/// reaches us, with `+` for a space as in a form. (S3's keys are UTF-8.)
pub fn url_decoded_key(encoded: &str) -> Option<String> {
    let plus_as_space = encoded.replace('+', " ");
    percent_encoding::percent_decode_str(&plus_as_space)
        .decode_utf8()
        .ok()
        .map(|key| key.into_owned())
}

/// Objects in one S3 bucket.
#[derive(Debug, Clone)]
pub struct S3BlobStore {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3BlobStore {
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        S3BlobStore {
            client,
            bucket: bucket.into(),
        }
    }

    /// The object's size and body, unread; one over `max_bytes` is refused
    /// (dropping the body closes the connection without reading it).
    async fn open(&self, key: &str, max_bytes: u64) -> Result<(u64, ByteStream)> {
        let object = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                Some(service) if service.is_no_such_key() => Rejection::ObjectMissing {
                    key: key.to_string(),
                }
                .into(),
                _ => transient("S3 GetObject", e),
            })?;
        let size = object.content_length().unwrap_or(0).max(0) as u64;
        check_size(size, max_bytes)?;
        Ok((size, object.body))
    }
}

/// The next part of `body`, as it arrives.
async fn next_part(body: &mut ByteStream) -> Result<Option<Bytes>> {
    body.try_next()
        .await
        .map_err(|e| Error::transient("S3 GetObject body", e))
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn folders(&self, prefix: &str, from: Option<&str>) -> Result<FolderPage> {
        let page = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .delimiter("/")
            .encoding_type(EncodingType::Url)
            .set_continuation_token(from.map(str::to_string))
            .send()
            .await
            .map_err(|e| transient("S3 ListObjectsV2", e))?;
        Ok(FolderPage {
            folders: page
                .common_prefixes()
                .iter()
                .filter_map(|folder| folder.prefix().and_then(url_decoded_key))
                .collect(),
            next: page.next_continuation_token().map(str::to_string),
        })
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        max_keys: usize,
    ) -> Result<ListedPage> {
        let page = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .set_start_after(start_after.map(str::to_string))
            .encoding_type(EncodingType::Url)
            .max_keys(max_keys.clamp(1, MAX_LIST_PAGE) as i32)
            .send()
            .await
            .map_err(|e| transient("S3 ListObjectsV2", e))?;
        let objects = page
            .contents()
            .iter()
            .map(|object| {
                let encoded = object.key().unwrap_or_default();
                // S3's keys are UTF-8: a store that lists another is not
                // one a listing can resume in (a cursor is a key), nor one
                // whose gaps can be read as deletions.
                let key = url_decoded_key(encoded).ok_or_else(|| Rejection::InvalidKey {
                    key: encoded.to_string(),
                    detail: "the listing gave a key that is not UTF-8 (shown URL-encoded)".into(),
                })?;
                Ok(Listed {
                    key,
                    size: object.size().unwrap_or(0).max(0) as u64,
                    version: object.e_tag().unwrap_or_default().to_string(),
                })
            })
            .collect::<Result<_>>()?;
        Ok(ListedPage {
            objects,
            truncated: page.is_truncated().unwrap_or(false),
        })
    }

    async fn head(&self, key: &str) -> Result<ObjectInfo> {
        let object = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                Some(service) if service.is_not_found() => Rejection::ObjectMissing {
                    key: key.to_string(),
                }
                .into(),
                _ => transient("S3 HeadObject", e),
            })?;
        Ok(ObjectInfo {
            size: object.content_length().unwrap_or(0).max(0) as u64,
            version: object.e_tag().unwrap_or_default().to_string(),
            user_metadata: object
                .metadata()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .collect(),
        })
    }

    async fn get(&self, key: &str, max_bytes: u64) -> Result<Bytes> {
        // Into one buffer of the object's size as it streams in: collecting
        // the parts first and joining them would hold the object twice.
        let (size, mut body) = self.open(key, max_bytes).await?;
        let mut buffer = Vec::with_capacity(size as usize);
        while let Some(part) = next_part(&mut body).await? {
            buffer.extend_from_slice(&part);
        }
        Ok(Bytes::from(buffer))
    }

    async fn parts(&self, key: &str, max_bytes: u64) -> Result<Parts> {
        let (_, body) = self.open(key, max_bytes).await?;
        Ok(Box::pin(futures::stream::try_unfold(
            body,
            |mut body| async move { Ok(next_part(&mut body).await?.map(|part| (part, body))) },
        )))
    }

    async fn put(&self, key: &str, body: Bytes) -> Result<()> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| transient("S3 PutObject", e))?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| transient("S3 DeleteObject", e))?;
        Ok(())
    }
}

/// A URL the holder may `PUT` one object to until it expires, and the
/// headers the request must carry.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PresignedPut {
    pub url: String,
    pub method: String,
    pub headers: std::collections::BTreeMap<String, String>,
}

/// Presigns a `PUT` of `key` of exactly `size` bytes (the length is signed,
/// so S3 refuses any other body) that expires after `expires_in`.
pub async fn presign_put(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    size: u64,
    expires_in: Duration,
) -> Result<PresignedPut> {
    let config = aws_sdk_s3::presigning::PresigningConfig::expires_in(expires_in)
        .map_err(|e| Error::transient("presigning config", e))?;
    let request = s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .content_length(size as i64)
        .presigned(config)
        .await
        .map_err(|e| transient("presigning S3 PutObject", e))?;
    Ok(PresignedPut {
        url: request.uri().to_string(),
        method: request.method().to_string(),
        headers: request
            .headers()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect(),
    })
}

/// Whether the bucket exists and this role may use it.
pub async fn check_bucket(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<()> {
    s3.head_bucket()
        .bucket(bucket)
        .send()
        .await
        .map_err(|e| transient("S3 HeadBucket", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listed_key_is_decoded_as_s3_encodes_it() {
        assert_eq!(
            url_decoded_key("uploads/acme/a%2Bb+c%01d%C3%A9.md").as_deref(),
            Some("uploads/acme/a+b c\u{1}dé.md")
        );
        assert_eq!(url_decoded_key("uploads/acme/%FF.md"), None);
    }
}
