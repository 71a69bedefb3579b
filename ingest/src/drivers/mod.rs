//! What delivers work to the pipeline, all under one delivery policy
//! (`delivery`): the Lambda functions' handlers (`handlers`, which the local
//! runner calls too) over a [`Deployment`], and the CLI's in-process
//! pipeline (`local`).

pub mod delivery;
mod deployment;
pub mod handlers;
pub mod local;

pub use deployment::Deployment;
