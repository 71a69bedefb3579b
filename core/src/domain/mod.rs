//! What the pipeline is about, with no I/O: upload keys and tenants, stable
//! ids, job states, metadata attributes.

pub mod access_keys;
pub mod format;
pub mod ids;
pub mod keys;
pub mod metadata;
pub mod state;
