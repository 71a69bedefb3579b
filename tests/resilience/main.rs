//! The resilience tier: processes killed with -9 mid-stage, database and
//! provider outages, the chaos run. Slow by nature; `scripts/test quick`
//! leaves it out.

mod chaos;
mod crash_recovery;
mod sync_at_scale;
mod sync_kill;
