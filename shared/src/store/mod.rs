//! Postgres: the pool and migrations (`db`), job rows and their moves
//! (`jobs`), what status and the API read (`status`), bulk-load indexes
//! (`bulk`).

pub mod bulk;
pub mod db;
pub mod jobs;
pub mod status;
