//! S3 Inventory reports written as S3 writes them (gzipped CSV files of
//! `Bucket, Key, Size, ETag`, a manifest naming each with its MD5), into a
//! stack's bucket under `inventory/`: what `docpipe sync --inventory` reads.

use crate::local_aws::LocalAws;
use flate2::Compression;
use flate2::write::GzEncoder;
use md5::{Digest, Md5};
use std::io::Write;
use std::time::SystemTime;

/// One object as a report lists it.
pub struct ReportRow {
    pub key: String,
    pub size: i64,
    /// As S3 gives it (quoted); the report writes it bare, as S3 does.
    pub etag: String,
}

/// The rows of `keys` as the bucket holds them now.
pub async fn rows_of(stack: &LocalAws, keys: &[&str]) -> Vec<ReportRow> {
    let mut rows = Vec::new();
    for key in keys {
        let head = stack
            .s3
            .head_object()
            .bucket(&stack.resources.bucket)
            .key(*key)
            .send()
            .await
            .expect("HeadObject");
        rows.push(ReportRow {
            key: key.to_string(),
            size: head.content_length().unwrap_or(0),
            etag: head.e_tag().unwrap_or_default().to_string(),
        });
    }
    rows
}

/// Writes report `name` of `rows`, taken at `taken`, in `files` files (the
/// rows in reverse: a report is in no order); `source` is the bucket it
/// says it lists. Returns the manifest's key.
pub async fn write_report(
    stack: &LocalAws,
    (name, source): (&str, &str),
    rows: &[ReportRow],
    (files, taken): (usize, SystemTime),
) -> String {
    let mut bodies = Vec::new();
    for part in rows.rchunks(rows.len().div_ceil(files).max(1)) {
        let mut csv = GzEncoder::new(Vec::new(), Compression::default());
        for row in part.iter().rev() {
            let etag = row.etag.trim_matches('"');
            let key = percent_encoding::utf8_percent_encode(&row.key, KEY_ENCODING);
            writeln!(csv, "\"{source}\",\"{key}\",\"{}\",\"{etag}\"", row.size).unwrap();
        }
        bodies.push(csv.finish().unwrap());
    }
    write_files(stack, (name, source), bodies, taken).await
}

/// Writes report `name` of these gzipped CSV files as they are (a report
/// S3 would never write, say), taken at `taken`; returns the manifest's key.
pub async fn write_files(
    stack: &LocalAws,
    (name, source): (&str, &str),
    bodies: Vec<Vec<u8>>,
    taken: SystemTime,
) -> String {
    let folder = format!("inventory/{source}/uploads/{name}");
    let mut listed = Vec::new();
    for (n, body) in bodies.into_iter().enumerate() {
        let key = format!("{folder}/data/{n}.csv.gz");
        let md5 = hex::encode(Md5::digest(&body));
        listed.push(serde_json::json!({"key": key, "size": body.len(), "MD5checksum": md5}));
        stack.put(&key, body).await;
    }
    let millis = taken
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let manifest = serde_json::json!({
        "sourceBucket": source,
        "destinationBucket": format!("arn:aws:s3:::{}", stack.resources.bucket),
        "version": "2016-11-30",
        "creationTimestamp": millis.to_string(),
        "fileFormat": "CSV",
        "fileSchema": "Bucket, Key, Size, ETag",
        "files": listed,
    });
    let key = format!("{folder}/manifest.json");
    stack.put(&key, manifest.to_string()).await;
    key
}

/// What a report's keys are URL-encoded for: everything but the unreserved
/// characters and `/`.
const KEY_ENCODING: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
