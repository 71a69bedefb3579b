//! The outside world behind the pipeline's ports: the blob store and queue
//! traits with their local stand-ins (`blob`, `queue`), S3 (`s3`: the blob
//! store, presigned uploads), SQS (`sqs`: the stage queues, their depths),
//! S3's notifications, the SDK's shared settings and Bedrock's errors
//! (`sdk`), and LlamaParse.

pub mod blob;
pub mod llamaparse;
pub mod queue;
pub mod s3;
pub mod s3_notification;
pub mod sdk;
pub mod sqs;

use aws_sdk_s3::error::DisplayErrorContext;
use docpipe_core::error::Error;

/// An SDK call that failed, to be retried: with the service's own detail.
fn transient<E: std::error::Error>(context: &str, err: E) -> Error {
    Error::transient(context, DisplayErrorContext(err))
}
