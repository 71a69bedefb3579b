//! The whole pipeline in one process: a directory as the blob store, an
//! in-process queue, and the same stage handlers as Lambda, under the same
//! delivery policy (`delivery`): transient errors are retried with backoff,
//! as SQS redelivery would, then fail the job.

use crate::drivers::delivery::{self, DeliveryPolicy, Verdict};
use crate::pipeline::metadata::{self, SidecarChange};
use crate::pipeline::{self, Pipeline, ingest::Change, ingest::Ingested};
use async_trait::async_trait;
use deadpool_postgres::Pool;
use docpipe_aws::blob::LocalBlobStore;
use docpipe_aws::queue::{Queue, StageMessage};
use docpipe_core::domain::keys::sidecar_target;
use docpipe_core::domain::state::JobState;
use docpipe_core::error::{ConfigError, Error, Result};
use docpipe_core::settings::PipelineSettings;
use docpipe_core::store::jobs;
use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// Attempts per message before its job fails, like an SQS maxReceiveCount.
pub const MAX_ATTEMPTS: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// Stage messages for this process's own runner. Delayed messages are held by
/// a timer task and counted, so a run does not end while one is due.
struct InProcessQueue {
    sender: mpsc::UnboundedSender<StageMessage>,
    delayed: Arc<AtomicUsize>,
}

#[async_trait]
impl Queue for InProcessQueue {
    async fn send(&self, messages: Vec<StageMessage>) -> Result<()> {
        for message in messages {
            self.sender
                .send(message)
                .map_err(|_| Error::Transient("local queue is closed".into()))?;
        }
        Ok(())
    }

    async fn send_later(&self, message: StageMessage, delay: Duration) -> Result<()> {
        let (sender, delayed) = (self.sender.clone(), self.delayed.clone());
        delayed.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            // Sent before the count drops, so the run sees one or the other.
            let _ = sender.send(message);
            delayed.fetch_sub(1, Ordering::SeqCst);
        });
        Ok(())
    }
}

/// What a run reports as it goes.
#[derive(Debug)]
pub enum Progress<'a> {
    Ingested {
        key: &'a str,
        ingested: &'a Ingested,
    },
    IngestFailed {
        key: &'a str,
        error: &'a Error,
    },
    JobEnded {
        job_id: uuid::Uuid,
        state: JobState,
    },
}

/// What a run did with each key.
#[derive(Debug, Default)]
pub struct LocalRun {
    pub ingested: Vec<(String, Ingested)>,
    /// Metadata sidecars read, by key.
    pub sidecars: Vec<(String, SidecarChange)>,
    /// Keys that never became a job (invalid key, vanished file, database down).
    pub not_ingested: Vec<(String, String)>,
}

enum Work {
    Ingest(String),
    Stage(StageMessage),
}

/// What one attempt at a piece of work came to.
enum Outcome {
    Ingested(String, Result<Ingested>),
    Stage(StageMessage, Verdict),
}

pub struct LocalPipeline {
    pipeline: Arc<Pipeline>,
    blobs: LocalBlobStore,
    inbox: mpsc::UnboundedReceiver<StageMessage>,
    delayed: Arc<AtomicUsize>,
    concurrency: usize,
    delivery: DeliveryPolicy,
}

impl LocalPipeline {
    pub fn new(config: &PipelineSettings, db: Pool) -> std::result::Result<Self, ConfigError> {
        let (sender, inbox) = mpsc::unbounded_channel();
        let delayed = Arc::new(AtomicUsize::new(0));
        let blobs = LocalBlobStore::new(&config.stages.local_blob_dir);
        let queue = InProcessQueue {
            sender,
            delayed: delayed.clone(),
        };
        let pipeline = Pipeline::new(config, db, Arc::new(blobs.clone()), Arc::new(queue))?;
        Ok(LocalPipeline {
            pipeline: Arc::new(pipeline),
            blobs,
            inbox,
            delayed,
            concurrency: config.database.db_pool_size.max(1),
            delivery: DeliveryPolicy {
                max_attempts: MAX_ATTEMPTS,
                deadline: config.stages.stage_deadline,
                first_backoff: FIRST_BACKOFF,
            },
        })
    }

    pub fn pipeline(&self) -> &Arc<Pipeline> {
        &self.pipeline
    }

    /// Copies a local file into the blob store under `key`, as an upload would.
    pub async fn upload(&self, key: &str, file: &Path) -> Result<()> {
        let target = self.blobs.path_of(key)?;
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        tokio::fs::copy(file, &target).await?;
        Ok(())
    }

    /// Ingests `keys` and runs every stage until no work is left. Metadata
    /// sidecars among them are read first (in either order the documents
    /// end with the same metadata).
    pub async fn run(
        &mut self,
        keys: Vec<String>,
        mut progress: impl FnMut(Progress<'_>),
    ) -> LocalRun {
        let mut run = LocalRun::default();
        let (sidecars, keys): (Vec<_>, Vec<_>) = keys
            .into_iter()
            .partition(|key| sidecar_target(key).is_some());
        for key in sidecars {
            match metadata::sidecar_changed(&self.pipeline, &key).await {
                Ok(change) => run.sidecars.push((key, change)),
                Err(error) => run.not_ingested.push((key, error.to_string())),
            }
        }
        let mut ingests: VecDeque<(Work, u32)> =
            keys.into_iter().map(|k| (Work::Ingest(k), 1)).collect();
        let mut stage_work: VecDeque<(Work, u32)> = VecDeque::new();
        let mut tasks = JoinSet::new();
        loop {
            while let Ok(message) = self.inbox.try_recv() {
                stage_work.push_back((Work::Stage(message), 1));
            }
            // Finish documents already under way before starting new ones.
            while tasks.len() < self.concurrency
                && let Some((work, attempt)) =
                    stage_work.pop_front().or_else(|| ingests.pop_front())
            {
                let pipeline = self.pipeline.clone();
                let policy = self.delivery;
                tasks.spawn(async move {
                    if attempt > 1 {
                        tokio::time::sleep(policy.backoff(attempt)).await;
                    }
                    (attempt, perform(&pipeline, work, attempt, &policy).await)
                });
            }
            if tasks.is_empty() {
                if self.delayed.load(Ordering::SeqCst) == 0 && self.inbox.is_empty() {
                    break;
                }
                // Only delayed messages are left: wait for the next one.
                if let Some(message) = self.inbox.recv().await {
                    stage_work.push_back((Work::Stage(message), 1));
                }
                continue;
            }
            let Some(joined) = tasks.join_next().await else {
                break;
            };
            let (attempt, outcome) = joined.expect("panics are caught inside the task");
            match outcome {
                Outcome::Ingested(key, Ok(ingested)) => {
                    progress(Progress::Ingested {
                        key: &key,
                        ingested: &ingested,
                    });
                    if ingested.change == Change::Unchanged
                        && !ingested.state.is_terminal()
                        && let Err(error) = self.resume(&ingested).await
                    {
                        tracing::warn!(job_id = %ingested.job_id, %error, "could not resume job");
                    }
                    run.ingested.push((key, ingested));
                }
                Outcome::Ingested(key, Err(error))
                    if error.is_transient() && attempt < self.delivery.max_attempts =>
                {
                    tracing::warn!(key, attempt, %error, "retrying");
                    ingests.push_back((Work::Ingest(key), attempt + 1));
                }
                Outcome::Ingested(key, Err(error)) => {
                    progress(Progress::IngestFailed {
                        key: &key,
                        error: &error,
                    });
                    run.not_ingested.push((key, error.to_string()));
                }
                Outcome::Stage(_, Verdict::Done(handled)) => {
                    if let Some(state) = handled.ended {
                        progress(Progress::JobEnded {
                            job_id: handled.job_id,
                            state,
                        });
                    }
                }
                Outcome::Stage(message, Verdict::Retry(_)) => {
                    stage_work.push_back((Work::Stage(message), attempt + 1));
                }
                Outcome::Stage(message, Verdict::GaveUp { job_failed, .. }) => {
                    if job_failed {
                        progress(Progress::JobEnded {
                            job_id: message.job_id,
                            state: JobState::Failed,
                        });
                    }
                }
            }
        }
        run
    }

    /// A job left mid-way by an earlier, interrupted run gets its next messages again.
    async fn resume(&self, ingested: &Ingested) -> Result<()> {
        if let Some(job) = jobs::find(&self.pipeline.db.get().await?, ingested.job_id).await? {
            self.pipeline
                .queue
                .send(pipeline::resume_messages(
                    &job,
                    self.pipeline.embed_batch_size,
                ))
                .await?;
        }
        Ok(())
    }
}

async fn perform(
    pipeline: &Pipeline,
    work: Work,
    attempt: u32,
    policy: &DeliveryPolicy,
) -> Outcome {
    match work {
        Work::Ingest(key) => {
            // Each local upload gets its own correlation id, as an S3 request would.
            let correlation_id = uuid::Uuid::new_v4().to_string();
            let ingest = pipeline::ingest::ingest(pipeline, &key, &correlation_id);
            let ingested = delivery::isolated(policy.deadline, ingest).await;
            Outcome::Ingested(key, ingested.unwrap_or_else(|trouble| Err(trouble.into())))
        }
        Work::Stage(message) => {
            let verdict =
                delivery::stage_message::<pipeline::AllStages>(pipeline, &message, attempt, policy)
                    .await;
            Outcome::Stage(message, verdict)
        }
    }
}

/// Files to ingest and the upload keys they get: a file keeps its name, a
/// directory's files (recursively, hidden ones skipped) keep their paths
/// relative to it. Sorted, so runs are repeatable.
pub fn upload_keys(
    tenant: &str,
    paths: &[std::path::PathBuf],
) -> std::io::Result<Vec<(String, std::path::PathBuf)>> {
    let tenant = docpipe_core::domain::keys::Tenant::new(tenant).map_err(std::io::Error::other)?;
    let prefix = tenant.upload_path("");
    let mut files = Vec::new();
    for path in paths {
        if !path.is_dir() {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            std::fs::metadata(path)?;
            files.push((format!("{prefix}{name}"), path.clone()));
            continue;
        }
        let hidden = |entry: &walkdir::DirEntry| {
            entry.depth() > 0 && entry.file_name().to_string_lossy().starts_with('.')
        };
        // Links are not followed: one may lead out of the folder (to ~/.ssh, /etc).
        for entry in walkdir::WalkDir::new(path)
            .into_iter()
            .filter_entry(|e| !hidden(e))
        {
            let entry = entry.map_err(std::io::Error::other)?;
            if entry.path_is_symlink() {
                tracing::warn!(path = %entry.path().display(), "symbolic link skipped");
            } else if entry.file_type().is_file() {
                let relative = entry.path().strip_prefix(path).unwrap_or(entry.path());
                let key = format!("{prefix}{}", relative.to_string_lossy());
                files.push((key, entry.into_path()));
            }
        }
    }
    files.sort();
    files.dedup_by(|a, b| a.0 == b.0);
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::upload_keys;

    #[test]
    fn folders_are_walked_without_following_links_out() {
        let root = std::env::temp_dir().join(format!("docpipe-walk-{}", uuid::Uuid::new_v4()));
        let folder = root.join("corpus");
        std::fs::create_dir_all(folder.join("sub")).unwrap();
        std::fs::write(folder.join("a.md"), "a").unwrap();
        std::fs::write(folder.join("sub/b.txt"), "b").unwrap();
        std::fs::write(folder.join(".hidden.txt"), "h").unwrap();
        std::fs::write(root.join("secret.txt"), "not for upload").unwrap();
        std::os::unix::fs::symlink(root.join("secret.txt"), folder.join("link.txt")).unwrap();
        std::os::unix::fs::symlink(&root, folder.join("up")).unwrap();

        let keys: Vec<String> = upload_keys("acme", &[folder])
            .unwrap()
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        assert_eq!(keys, ["uploads/acme/a.md", "uploads/acme/sub/b.txt"]);
        std::fs::remove_dir_all(root).unwrap();
    }
}
