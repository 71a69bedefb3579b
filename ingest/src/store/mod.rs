//! The pipeline's own Postgres tables: a job's chunks on their way to
//! search (`chunks`) and a model change's moves (`model_change`). The tables
//! both paths read are `docpipe_core::store`'s.

pub mod chunks;
pub mod model_change;
pub mod sync;
