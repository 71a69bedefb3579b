//! The outside world behind the pipeline's ports: S3 and SQS (`aws`), the
//! blob store and queue traits with their local stand-ins (`blob`, `queue`),
//! S3's notifications, and LlamaParse.

pub mod aws;
pub mod blob;
pub mod llamaparse;
pub mod queue;
pub mod s3_notification;
