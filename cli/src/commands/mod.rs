//! Each command's work and output, a file a command.

pub mod eval;
pub mod ingest;
pub mod keys;
pub mod reembed;
pub mod search;
pub mod status;
pub mod sync;
