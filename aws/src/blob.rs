//! Where documents and parsed text live: S3 in AWS, a directory locally.

use async_trait::async_trait;
use bytes::Bytes;
use docpipe_core::error::{Error, Rejection, Result};
use futures::TryStreamExt;
use futures::stream::BoxStream;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// What is known about an object without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub size: u64,
    /// Changes whenever the object is rewritten (S3 ETag, local mtime).
    pub version: String,
    /// The object's user metadata (S3 `x-amz-meta-*`; none for a local file).
    pub user_metadata: BTreeMap<String, String>,
}

/// An object as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub size: u64,
    /// As [`ObjectInfo::version`] gives it.
    pub version: String,
}

/// Most objects one listing page may hold (S3's own most).
pub const MAX_LIST_PAGE: usize = 1000;

/// One page of a listing, in the keys' byte order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListedPage {
    pub objects: Vec<Listed>,
    /// Whether keys come after the page's last.
    pub truncated: bool,
}

/// One page of the folders right under a prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FolderPage {
    /// Each folder's whole prefix (`uploads/acme/`), in byte order.
    pub folders: Vec<String>,
    /// Where the listing goes on (S3's continuation token), if it does.
    pub next: Option<String>,
}

/// An object's bytes as they arrive, a part at a time.
pub type Parts = BoxStream<'static, Result<Bytes>>;

#[async_trait]
pub trait BlobStore: Send + Sync {
    /// A page (at most [`MAX_LIST_PAGE`]) of the folders right under
    /// `prefix` (S3's common prefixes of delimiter `/`), from where the
    /// page before said it goes on.
    async fn folders(&self, prefix: &str, from: Option<&str>) -> Result<FolderPage>;
    /// Up to `max_keys` (at most [`MAX_LIST_PAGE`]) objects under `prefix`
    /// whose keys come after `start_after`, in byte order (S3's
    /// ListObjectsV2 order), so that a listing resumes from the last key it saw.
    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        max_keys: usize,
    ) -> Result<ListedPage>;
    /// Size and version, or [`Rejection::ObjectMissing`].
    async fn head(&self, key: &str) -> Result<ObjectInfo>;
    /// The whole object; refuses (without reading) one over `max_bytes`.
    async fn get(&self, key: &str, max_bytes: u64) -> Result<Bytes>;
    /// The object a part at a time (never held whole); refuses (without
    /// reading) one over `max_bytes`.
    async fn parts(&self, key: &str, max_bytes: u64) -> Result<Parts>;
    /// The SHA-256 of the object, read as a stream (never held whole);
    /// refuses (without reading) one over `max_bytes`.
    async fn sha256(&self, key: &str, max_bytes: u64) -> Result<[u8; 32]> {
        let mut parts = self.parts(key, max_bytes).await?;
        let mut hasher = Sha256::new();
        while let Some(part) = parts.try_next().await? {
            hasher.update(&part);
        }
        Ok(hasher.finalize().into())
    }
    async fn put(&self, key: &str, body: Bytes) -> Result<()>;
    /// Removes the object; removing one that does not exist is not an error.
    async fn delete(&self, key: &str) -> Result<()>;
}

/// Objects as files under a root directory; a key is a relative path.
#[derive(Debug, Clone)]
pub struct LocalBlobStore {
    root: PathBuf,
}

impl LocalBlobStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalBlobStore { root: root.into() }
    }

    /// The file behind a key. Keys that could escape the root are refused.
    pub fn path_of(&self, key: &str) -> Result<PathBuf> {
        let plain = key
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..");
        if !plain {
            return Err(Rejection::InvalidKey {
                key: key.to_string(),
                detail: "must be a relative path without '.' or '..' segments".into(),
            }
            .into());
        }
        Ok(self.root.join(key))
    }
}

/// What a streamed read of a file reads at a time.
const READ_BUFFER_BYTES: usize = 256 * 1024;

/// Refuses an object over `max_bytes`, before anything of it is read.
pub fn check_size(size: u64, max_bytes: u64) -> Result<()> {
    if size > max_bytes {
        return Err(Rejection::TooLarge {
            size,
            limit: max_bytes,
        }
        .into());
    }
    Ok(())
}

fn missing_or_transient(key: &str, err: std::io::Error) -> Error {
    if err.kind() == std::io::ErrorKind::NotFound {
        Rejection::ObjectMissing {
            key: key.to_string(),
        }
        .into()
    } else {
        Error::transient("local blob store", err)
    }
}

#[async_trait]
impl BlobStore for LocalBlobStore {
    /// Every folder at once: a developer's folder, not a bucket of millions.
    async fn folders(&self, prefix: &str, _from: Option<&str>) -> Result<FolderPage> {
        let mut folders = Vec::new();
        if let Ok(mut entries) = tokio::fs::read_dir(self.root.join(prefix)).await {
            while let Some(entry) = entries.next_entry().await? {
                if let Ok(name) = entry.file_name().into_string()
                    && entry.file_type().await?.is_dir()
                {
                    folders.push(format!("{prefix}{name}/"));
                }
            }
        }
        folders.sort_unstable();
        Ok(FolderPage {
            folders,
            next: None,
        })
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        max_keys: usize,
    ) -> Result<ListedPage> {
        let max_keys = max_keys.clamp(1, MAX_LIST_PAGE);
        // The directory the prefix names (or is in), walked whole: a local
        // store is a developer's folder, not a bucket of millions.
        let folder = &prefix[..prefix.rfind('/').map_or(0, |at| at + 1)];
        let mut keys = Vec::new();
        let mut folders = vec![folder.to_string()];
        while let Some(folder) = folders.pop() {
            let path = self.root.join(&folder);
            let Ok(mut entries) = tokio::fs::read_dir(&path).await else {
                continue;
            };
            while let Some(entry) = entries.next_entry().await? {
                let Ok(name) = entry.file_name().into_string() else {
                    continue;
                };
                let key = format!("{folder}{name}");
                if entry.file_type().await?.is_dir() {
                    folders.push(format!("{key}/"));
                } else if key.starts_with(prefix)
                    && start_after.is_none_or(|after| key.as_str() > after)
                {
                    keys.push(key);
                }
            }
        }
        keys.sort_unstable();
        let truncated = keys.len() > max_keys;
        let mut objects = Vec::new();
        for key in keys.into_iter().take(max_keys) {
            let info = self.head(&key).await?;
            objects.push(Listed {
                key,
                size: info.size,
                version: info.version,
            });
        }
        Ok(ListedPage { objects, truncated })
    }

    async fn head(&self, key: &str) -> Result<ObjectInfo> {
        let meta = tokio::fs::metadata(self.path_of(key)?)
            .await
            .map_err(|e| missing_or_transient(key, e))?;
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        Ok(ObjectInfo {
            size: meta.len(),
            version: format!("{}-{modified}", meta.len()),
            user_metadata: BTreeMap::new(),
        })
    }

    async fn get(&self, key: &str, max_bytes: u64) -> Result<Bytes> {
        check_size(self.head(key).await?.size, max_bytes)?;
        let bytes = tokio::fs::read(self.path_of(key)?)
            .await
            .map_err(|e| missing_or_transient(key, e))?;
        Ok(Bytes::from(bytes))
    }

    async fn parts(&self, key: &str, max_bytes: u64) -> Result<Parts> {
        use tokio::io::AsyncReadExt;
        check_size(self.head(key).await?.size, max_bytes)?;
        let file = tokio::fs::File::open(self.path_of(key)?)
            .await
            .map_err(|e| missing_or_transient(key, e))?;
        Ok(Box::pin(futures::stream::try_unfold(
            file,
            |mut file| async move {
                let mut buffer = vec![0; READ_BUFFER_BYTES];
                match file.read(&mut buffer).await? {
                    0 => Ok(None),
                    n => {
                        buffer.truncate(n);
                        Ok(Some((Bytes::from(buffer), file)))
                    }
                }
            },
        )))
    }

    async fn put(&self, key: &str, body: Bytes) -> Result<()> {
        let path = self.path_of(key)?;
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        // Write then rename, so a reader never sees half an object.
        let partial = path.with_extension(format!("partial-{}", std::process::id()));
        // By value, as a Vec (no copy when the buffer is ours alone): tokio
        // copies a borrowed buffer before writing it.
        tokio::fs::write(&partial, Vec::from(body)).await?;
        tokio::fs::rename(&partial, &path).await?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<()> {
        match tokio::fs::remove_file(self.path_of(key)?).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keys_cannot_escape_the_root() {
        let store = LocalBlobStore::new("/tmp/docpipe-blob-test");
        for key in [
            "../etc/passwd",
            "uploads/../../x",
            "/etc/passwd",
            "",
            "uploads/./a",
        ] {
            let err = store.get(key, 10).await.unwrap_err();
            assert!(
                matches!(err, Error::Rejected(Rejection::InvalidKey { .. })),
                "{key}: {err}"
            );
        }
    }

    #[tokio::test]
    async fn put_get_head_round_trip_and_limits() {
        let dir = std::env::temp_dir().join(format!("docpipe-blob-{}", uuid::Uuid::new_v4()));
        let store = LocalBlobStore::new(&dir);
        store
            .put("uploads/t/a b.txt", Bytes::from_static(b"hello"))
            .await
            .unwrap();
        assert_eq!(
            store.get("uploads/t/a b.txt", 5).await.unwrap(),
            Bytes::from_static(b"hello")
        );
        assert_eq!(store.head("uploads/t/a b.txt").await.unwrap().size, 5);
        assert_eq!(
            store.sha256("uploads/t/a b.txt", 5).await.unwrap(),
            docpipe_core::domain::ids::sha256(b"hello")
        );
        assert!(store.sha256("uploads/t/a b.txt", 4).await.is_err());
        let err = store.get("uploads/t/a b.txt", 4).await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::Rejected(Rejection::TooLarge { size: 5, limit: 4 })
            ),
            "{err}"
        );
        let err = store.get("uploads/t/none.txt", 4).await.unwrap_err();
        assert!(
            matches!(err, Error::Rejected(Rejection::ObjectMissing { .. })),
            "{err}"
        );
        store.delete("uploads/t/a b.txt").await.unwrap();
        store.delete("uploads/t/a b.txt").await.unwrap();
        assert!(store.head("uploads/t/a b.txt").await.is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
