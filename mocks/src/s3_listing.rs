//! A mock of S3's `ListObjectsV2` (path style) over a bucket of synthetic
//! objects: `count` keys `<prefix>object-NNNNNNNNN.txt` of `size` bytes
//! each, made as they are listed, so a test or bench lists a million
//! objects without writing one. Only listing is served; any other request
//! is 501. One key may be made one S3 could not list: not UTF-8 once its
//! URL encoding is undone.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct MockBucket {
    pub name: String,
    /// Where the objects are (`uploads/acme/`).
    pub prefix: String,
    pub count: u64,
    pub size: u64,
    /// The object whose key ends `-%FF.txt` (a byte no UTF-8 holds), if any.
    pub not_utf8: Option<u64>,
    lists: AtomicU64,
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(rename = "list-type")]
    list_type: Option<String>,
    #[serde(default)]
    prefix: String,
    #[serde(rename = "start-after")]
    start_after: Option<String>,
    #[serde(rename = "max-keys")]
    max_keys: Option<u64>,
}

impl MockBucket {
    pub fn new(name: &str, prefix: &str, count: u64, size: u64) -> Arc<MockBucket> {
        Self::with_key_not_utf8(name, prefix, count, size, None)
    }

    /// As [`MockBucket::new`], with object `not_utf8`'s key not UTF-8.
    pub fn with_key_not_utf8(
        name: &str,
        prefix: &str,
        count: u64,
        size: u64,
        not_utf8: Option<u64>,
    ) -> Arc<MockBucket> {
        Arc::new(MockBucket {
            name: name.into(),
            prefix: prefix.into(),
            count,
            size,
            not_utf8,
            lists: AtomicU64::new(0),
        })
    }

    /// The `n`th object's key (URL-encoded, as listed); zero-padded, so
    /// byte order is `n`'s order.
    pub fn key(&self, n: u64) -> String {
        let tail = if self.not_utf8 == Some(n) { "-%FF" } else { "" };
        format!("{}object-{n:09}{tail}.txt", self.prefix)
    }

    /// ListObjectsV2 calls served.
    pub fn lists(&self) -> u64 {
        self.lists.load(Ordering::Relaxed)
    }

    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/{bucket}", get(list))
            .route("/{bucket}/", get(list))
            .with_state(self.clone())
    }

    /// The objects under `prefix` after `start_after`, as indexes.
    fn range(&self, prefix: &str, start_after: Option<&str>) -> std::ops::Range<u64> {
        // Every key starts with the bucket's prefix: a query prefix longer
        // than it narrows the range, one it does not match empties it.
        let first_with_prefix = partition(self.count, |n| self.key(n).as_str() < prefix);
        let past_prefix = partition(self.count, |n| {
            let key = self.key(n);
            key.as_str() < prefix || key.starts_with(prefix)
        });
        let first = match start_after {
            Some(after) => partition(self.count, |n| self.key(n).as_str() <= after),
            None => 0,
        };
        first.max(first_with_prefix).min(past_prefix)..past_prefix
    }
}

/// The first `n` in `0..count` for which `before(n)` is false (`before`
/// holds on a leading run).
fn partition(count: u64, before: impl Fn(u64) -> bool) -> u64 {
    let (mut low, mut high) = (0, count);
    while low < high {
        let middle = low + (high - low) / 2;
        if before(middle) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    low
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

async fn list(
    State(bucket): State<Arc<MockBucket>>,
    axum::extract::Path(name): axum::extract::Path<String>,
    Query(query): Query<ListQuery>,
) -> Response {
    if query.list_type.as_deref() != Some("2") {
        return (StatusCode::NOT_IMPLEMENTED, "only ListObjectsV2").into_response();
    }
    if name != bucket.name {
        return (StatusCode::NOT_FOUND, "NoSuchBucket").into_response();
    }
    bucket.lists.fetch_add(1, Ordering::Relaxed);
    let max_keys = query.max_keys.unwrap_or(1000).min(1000);
    let range = bucket.range(&query.prefix, query.start_after.as_deref());
    let end = range.end.min(range.start + max_keys);
    let truncated = end < range.end;
    let mut body = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">"#,
    );
    let _ = write!(
        body,
        "<Name>{}</Name><Prefix>{}</Prefix><KeyCount>{}</KeyCount><MaxKeys>{max_keys}</MaxKeys><IsTruncated>{truncated}</IsTruncated>",
        escape(&bucket.name),
        escape(&query.prefix),
        end - range.start,
    );
    for n in range.start..end {
        let _ = write!(
            body,
            "<Contents><Key>{}</Key><LastModified>2026-01-01T00:00:00.000Z</LastModified><ETag>&quot;{n:032x}&quot;</ETag><Size>{}</Size><StorageClass>STANDARD</StorageClass></Contents>",
            escape(&bucket.key(n)),
            bucket.size,
        );
    }
    body.push_str("</ListBucketResult>");
    ([("content-type", "application/xml")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_begins_after_its_start_and_stays_in_its_prefix() {
        let bucket = MockBucket::new("b", "uploads/acme/", 1000, 0);
        assert_eq!(bucket.range("uploads/acme/", None), 0..1000);
        assert_eq!(
            bucket.range("uploads/acme/", Some(&bucket.key(9))),
            10..1000
        );
        assert_eq!(
            bucket.range("uploads/", Some("uploads/acme/object-000000009.txx")),
            10..1000
        );
        assert_eq!(bucket.range("uploads/acme/object-0000001", None), 100..200);
        assert!(bucket.range("uploads/globex/", None).is_empty());
        assert!(bucket.range("uploads/acme/", Some("uploads/zz")).is_empty());
    }
}
