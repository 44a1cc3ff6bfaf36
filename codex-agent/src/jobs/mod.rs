//! Jobs: the records of delegated work, the on-disk store that keeps them, and the handles
//! of delegations running in the background.
//!
//! A *job* is one delegated piece of work (a task, a review, an adversarial review) whose
//! progress outlives the process that started it: `codex-companion status` in another terminal
//! reads it, a background worker updates it, a crash leaves it behind for the next reader to
//! reconcile.
//!
//! ## Layout and guarantees
//!
//! ```text
//! <state root> (codex_core::paths::state_root)/
//!   workspaces/<name>-<hash>/        one store per project (canonical git top-level or cwd)
//!     store.lock                     advisory lock taken around every read-modify-write
//!     jobs/<job-id>.json             one record per job, written atomically (temp + rename)
//!     jobs/<job-id>.json.corrupt-N   a record that could not be parsed, kept aside
//!     logs/<job-id>.log              the job's log (secrets redacted)
//! ```
//!
//! - Every write is a complete new file renamed over the old one while holding the store's
//!   exclusive lock, so concurrent writers in several processes lose nothing and readers
//!   never see half a record.
//! - A record that cannot be parsed is moved aside and reported ([`StoreError::Corrupt`] from
//!   [`JobStore::get`], a [`ListReport::corrupt`] entry from [`JobStore::list`]); it is never
//!   silently reset.
//! - A job's identity is its file name. Ids are checked by one rule ([`validate_job_id`]:
//!   letters, digits, `-` and `_`) whether they come from the caller or from the store's own
//!   files, and every path of a job (record, log, a companion's spec) is built from a checked
//!   id only, never from a record's content. A record whose `id` field differs from its file
//!   name (a hand-edited or damaged file, possibly `"../../x"`) is corrupt: it is kept aside
//!   like an unparsable one, never rewritten under the id it claims. A `jobs/*.json` file whose
//!   name is not a valid id is kept aside too. The `log_file` field is derived from the id:
//!   whatever a file says, a record read back names `logs/<id>.log`, and pruning deletes
//!   only `jobs/<id>.json` and `logs/<id>.log`. So reading, reconciling and pruning write
//!   nothing outside the store's directory.
//! - Reading reconciles: a queued or running job whose worker process is gone is marked
//!   failed ("worker exited") by whoever reads the store next.
//! - Pruning keeps the newest `keep_finished` finished jobs (default 50).
//! - Text that lands in records or logs passes through [`redact`]: API keys and bearer tokens
//!   never reach the disk.

//!
//! ## Modules
//!
//! - [`record`]: what a job is ([`JobRecord`], its [`JobKind`], [`JobStatus`] and
//!   [`JobPhase`]) and the one job-id rule ([`validate_job_id`]).
//! - [`store`]: [`JobStore`], one per project ([`project_root`]).
//! - [`JobHandle`]: a background delegation of this process.
//! - [`redact`]: the secret filter every stored text passes through.
//! - [`Worker`]: the process that runs a job, told apart from a later process that got its
//!   pid.

#[cfg(test)]
mod fuzz;
mod handle;
pub mod record;
mod redact;
pub mod store;
mod worker;

pub use handle::JobHandle;
pub(crate) use handle::JobTracker;
pub use record::{
    JobKind, JobPhase, JobRecord, JobResult, JobStatus, MAX_JOB_ID_LEN, NewJob, validate_job_id,
};
pub use redact::redact;
pub use store::{
    DEFAULT_KEEP_FINISHED, JobStore, ListReport, ProjectSettings, StoreError, project_root,
};
pub use worker::Worker;
