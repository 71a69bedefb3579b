//! An S3 Inventory report as a sync's listing, for buckets too large to
//! list often (past ~10 M objects, ListObjectsV2 takes hours). The report
//! is delivered into the bucket under `inventory/`; its manifest names
//! gzipped CSV files in no particular order, so each is staged (a file per
//! slice, checked against the manifest's MD5) in Postgres, which then
//! serves it in byte order as a listing would. The report is a day old at
//! best: no document written after it was taken is removed.

use crate::pipeline::Pipeline;
use crate::store::sync::{self as rows, InventoryRow};
use deadpool_postgres::GenericClient;
use docpipe_aws::s3::url_decoded_key;
use docpipe_core::error::{Error, Rejection, Result};
use futures::TryStreamExt;
use md5::{Digest, Md5};
use std::io::Write;
use std::time::{Duration, SystemTime};

/// Where reports are read from: never a tenant's folder.
pub const INVENTORY_PREFIX: &str = "inventory/";
const MAX_MANIFEST_BYTES: u64 = 16 << 20;
/// One report file is staged in one slice, inside a function's deadline.
const MAX_FILE_BYTES: u64 = 1 << 30;
const MAX_FILES: usize = 100_000;
/// A line holds a 1 024-byte key URL-encoded (3 bytes a byte) and the rest.
const MAX_LINE_BYTES: usize = 16 << 10;
/// Rows staged per statement.
const STAGE_ROWS: usize = 1000;
/// Compressed bytes inflated at a time. Deflate expands a byte at most
/// ~1 032 times, so a line past the bound is caught within ~4 MiB of
/// output, whatever the size of the parts S3 sends (a gzip bomb).
const INFLATE_BYTES: usize = 4 << 10;

/// A report's `manifest.json`, as S3 Inventory writes it.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub source_bucket: String,
    /// Milliseconds since the epoch, as a string.
    creation_timestamp: String,
    file_format: String,
    file_schema: String,
    files: Vec<ReportFile>,
}

#[derive(Debug, Clone, serde::Deserialize)]
struct ReportFile {
    key: String,
    #[serde(rename = "MD5checksum")]
    md5: String,
}

/// A report that cannot be a sync's listing, and why.
pub(super) fn bad(detail: impl Into<String>) -> Error {
    Rejection::BadInventory {
        detail: detail.into(),
    }
    .into()
}

/// A report's object over its bound, said as such: not as a document over
/// MAX_FILE_BYTES, which the error names.
fn over_bound(key: &str) -> impl FnOnce(Error) -> Error + '_ {
    move |e| match e {
        Error::Rejected(Rejection::TooLarge { size, limit }) => bad(format!(
            "{key}: {size} bytes, over the {limit} a report's file may be"
        )),
        other => other,
    }
}

impl Manifest {
    /// The manifest at `key` in the pipeline's bucket, checked: CSV, with
    /// the columns a listing needs, its files under `inventory/`.
    pub async fn read(pipeline: &Pipeline, key: &str) -> Result<Manifest> {
        if !key.starts_with(INVENTORY_PREFIX) || !key.ends_with("/manifest.json") {
            return Err(bad(format!(
                "{key}: give a report's manifest.json under {INVENTORY_PREFIX}"
            )));
        }
        let bytes = (pipeline.blobs.get(key, MAX_MANIFEST_BYTES).await).map_err(over_bound(key))?;
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("{key}: {e}")))?;
        if manifest.file_format != "CSV" {
            return Err(bad(format!(
                "{key}: only CSV reports are read, not {}",
                manifest.file_format
            )));
        }
        Columns::of(&manifest.file_schema)?;
        if manifest.files.len() > MAX_FILES {
            return Err(bad(format!("{key}: over {MAX_FILES} files")));
        }
        if let Some(file) = manifest.files.iter().find(|file| {
            !file.key.starts_with(INVENTORY_PREFIX) || file.key.split('/').any(|part| part == "..")
        }) {
            return Err(bad(format!(
                "{key}: file {} is not under {INVENTORY_PREFIX}",
                file.key
            )));
        }
        manifest.taken()?;
        Ok(manifest)
    }

    /// When the report was taken.
    pub fn taken(&self) -> Result<SystemTime> {
        let millis: u64 = self
            .creation_timestamp
            .parse()
            .map_err(|_| bad("creationTimestamp is not milliseconds since the epoch"))?;
        Ok(SystemTime::UNIX_EPOCH + Duration::from_millis(millis))
    }

    /// How many files the report has.
    pub fn files(&self) -> usize {
        self.files.len()
    }

    /// Stages report file `n`'s rows under `prefix` as sync `id`'s listing,
    /// read as a stream (never held whole) and checked against its MD5.
    pub async fn stage_file(
        &self,
        pipeline: &Pipeline,
        client: &impl GenericClient,
        (id, prefix): (uuid::Uuid, &str),
        n: usize,
    ) -> Result<()> {
        let file = &self.files[n];
        let columns = Columns::of(&self.file_schema)?;
        let mut parts = (pipeline.blobs.parts(&file.key, MAX_FILE_BYTES).await)
            .map_err(over_bound(&file.key))?;
        let mut md5 = Md5::new();
        let mut csv = flate2::write::MultiGzDecoder::new(Vec::new());
        let mut staged = Vec::new();
        let unreadable = |e: std::io::Error| bad(format!("{}: {e}", file.key));
        while let Some(part) = parts.try_next().await? {
            md5.update(&part);
            for compressed in part.chunks(INFLATE_BYTES) {
                csv.write_all(compressed).map_err(unreadable)?;
                let text = csv.get_mut();
                if let Some(end) = text.iter().rposition(|&b| b == b'\n') {
                    columns.read(&text[..=end], prefix, &mut staged)?;
                    text.drain(..=end);
                }
                if text.len() > MAX_LINE_BYTES {
                    return Err(bad(format!(
                        "{}: a line over {MAX_LINE_BYTES} bytes",
                        file.key
                    )));
                }
                if staged.len() >= STAGE_ROWS {
                    rows::stage_inventory(client, id, &staged).await?;
                    staged.clear();
                }
            }
        }
        let rest = csv.finish().map_err(unreadable)?;
        columns.read(&rest, prefix, &mut staged)?;
        if !hex::encode(md5.finalize()).eq_ignore_ascii_case(&file.md5) {
            return Err(bad(format!(
                "{}: its MD5 is not the manifest's (changed or truncated)",
                file.key
            )));
        }
        rows::stage_inventory(client, id, &staged).await
    }
}

/// Where a report's CSV holds what a listing needs.
struct Columns {
    key: usize,
    size: usize,
    etag: usize,
    /// In a report of every version: only the latest is listed.
    is_latest: Option<usize>,
    is_delete_marker: Option<usize>,
}

impl Columns {
    fn of(schema: &str) -> Result<Columns> {
        let names: Vec<&str> = schema.split(',').map(str::trim).collect();
        let at = |name: &str| names.iter().position(|column| *column == name);
        let needed = |name: &str| {
            at(name).ok_or_else(|| bad(format!("the report has no {name} column (fileSchema)")))
        };
        Ok(Columns {
            key: needed("Key")?,
            size: needed("Size")?,
            etag: needed("ETag")?,
            is_latest: at("IsLatest"),
            is_delete_marker: at("IsDeleteMarker"),
        })
    }

    /// The objects under `prefix` in `lines` (whole CSV lines), onto `rows`.
    fn read(&self, lines: &[u8], prefix: &str, rows: &mut Vec<InventoryRow>) -> Result<()> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(lines);
        for record in reader.byte_records() {
            let record = record.map_err(|e| bad(format!("unreadable CSV: {e}")))?;
            let field = |n: usize| std::str::from_utf8(record.get(n).unwrap_or_default());
            let field = |n: usize| field(n).map_err(|_| bad("a field that is not UTF-8"));
            let listed = |n: Option<usize>, value: &str| -> Result<bool> {
                Ok(n.map(field).transpose()?.is_some_and(|v| v == value))
            };
            if listed(self.is_latest, "false")? || listed(self.is_delete_marker, "true")? {
                continue;
            }
            let encoded = field(self.key)?;
            let key = url_decoded_key(encoded)
                .ok_or_else(|| bad(format!("key {encoded} is not UTF-8 once decoded")))?;
            if !key.starts_with(prefix) {
                continue;
            }
            let size = field(self.size)?
                .parse()
                .map_err(|_| bad(format!("{key}: size is not a number")))?;
            let etag = field(self.etag)?;
            let etag = if etag.starts_with('"') {
                etag.to_string()
            } else {
                format!("\"{etag}\"")
            };
            rows.push(InventoryRow { key, size, etag });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_s_lines_become_the_listing_under_the_prefix() {
        let columns =
            Columns::of("Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, ETag").unwrap();
        let lines = concat!(
            "\"b\",\"uploads/acme/a+b%2C.md\",\"v1\",\"true\",\"false\",\"12\",\"0f\"\n",
            "\"b\",\"uploads/acme/old.md\",\"v0\",\"false\",\"false\",\"10\",\"0e\"\n",
            "\"b\",\"uploads/acme/gone.md\",\"v2\",\"true\",\"true\",\"\",\"\"\n",
            "\"b\",\"uploads/globex/x.md\",\"v3\",\"true\",\"false\",\"5\",\"0d\"\n",
        );
        let mut rows = Vec::new();
        columns
            .read(lines.as_bytes(), "uploads/acme/", &mut rows)
            .unwrap();
        assert_eq!(
            rows,
            [InventoryRow {
                key: "uploads/acme/a b,.md".into(),
                size: 12,
                etag: "\"0f\"".into()
            }]
        );
        for (bad_line, says) in [
            (
                "\"b\",\"uploads/acme/%FF\",\"v\",\"true\",\"false\",\"1\",\"e\"\n",
                "not UTF-8",
            ),
            (
                "\"b\",\"uploads/acme/x\",\"v\",\"true\",\"false\",\"-1\",\"e\"\n",
                "not a number",
            ),
        ] {
            let error = columns
                .read(bad_line.as_bytes(), "uploads/acme/", &mut rows)
                .unwrap_err();
            assert!(error.to_string().contains(says), "{error}");
        }
        assert!(Columns::of("Bucket, Key, Size").is_err());
    }
}
