//! Runs docpipe's functions locally against real queues: provisioning of the
//! bucket and queues, and an event-source runner that invokes the same
//! handlers Lambda would, the way Lambda would.

pub mod event_source;
pub mod provision;
