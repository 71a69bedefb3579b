//! The tables both paths read: documents, job rows and their moves
//! (`jobs`), what status and the API read (`status`), metadata sidecars
//! (`sidecars`), the stage work each tenant has in hand (`stage_work`).
//! The pool, migrations and search indexes are [`crate::db`]'s; the ledger
//! is [`crate::cost::ledger`], the breakers' table
//! [`crate::external::breakers`], which model a tenant searches
//! [`crate::embedding::models`].

pub mod documents;
pub mod jobs;
pub mod sidecars;
pub mod stage_work;
pub mod status;
