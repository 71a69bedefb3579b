//! Postgres: the pool and migrations (`db`), job rows and their moves
//! (`jobs`), what status and the API read (`status`), the search indexes
//! and bulk loads (`indexes`), metadata sidecars (`sidecars`), which model each tenant
//! searches (`models`), the stage work each tenant has in hand
//! (`stage_work`).

pub mod breakers;
pub mod db;
pub mod documents;
pub mod indexes;
pub mod jobs;
pub mod ledger;
pub mod models;
pub mod sidecars;
pub mod stage_work;
pub mod status;
