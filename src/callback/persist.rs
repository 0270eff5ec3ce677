//! Persisting what workloads report: any replica that verified a report writes it into the
//! attempt's CloudResource status (`status.report`) before it answers, so that a report never
//! lives only in one process's memory. A standby accepts reports as well as the leader, and a
//! restart loses none.
//!
//! Exit reports are written at once, every time (the wrapper gets 200 only once the exit is in
//! the API). Heartbeats and progress are written at most once per `interval` per attempt and
//! replica (the first one at once), so a running attempt costs a write a minute, not one per
//! heartbeat; the leader also keeps them in memory, where its controller sees them at once.
//!
//! Writes are JSON merge patches on the status subresource under their own field manager: they
//! set the fields they carry and never remove one another's (two replicas may write the same
//! attempt), and the CloudResource controller never applies `status.report`.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};

use super::reports::{AttemptId, Reports};
use crate::controller::training_job::resources::cloud_resource_name;
use crate::crd::CloudResource;

/// Field manager of the report writes.
pub const FIELD_MANAGER: &str = "runctl-callback";
/// Default: heartbeats and progress are persisted at most this often per attempt and replica.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);

/// Why a report could not be persisted.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// The attempt's CloudResource is gone: the attempt has ended and been released.
    #[error("the attempt's CloudResource is gone")]
    AttemptGone,
    /// Writing the status failed.
    #[error("failed to write the report into the CloudResource's status: {0}")]
    Write(#[source] kube::Error),
}

/// Writes the reports recorded in [`Reports`] into CloudResource status, throttling
/// heartbeats and progress.
pub struct Persister {
    client: Client,
    reports: Arc<Reports>,
    interval: Duration,
}

impl Persister {
    /// A persister of what `reports` holds, writing with `client`, heartbeats at most every
    /// `interval`.
    pub fn new(client: Client, reports: Arc<Reports>, interval: Duration) -> Self {
        Self {
            client,
            reports,
            interval,
        }
    }

    /// Persists what attempt `id` reported (recorded in the store at `now`) when it is due; an
    /// exit always.
    pub async fn persist(
        &self,
        id: &AttemptId,
        exit: bool,
        now: Timestamp,
    ) -> Result<(), PersistError> {
        let Some(body) = self
            .reports
            .due_for_persisting(id, exit, now, self.interval)
        else {
            return Ok(());
        };
        let api: Api<CloudResource> = Api::namespaced(self.client.clone(), &id.namespace);
        let patch = serde_json::json!({ "status": { "report": body } });
        let pp = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        match api
            .patch_status(
                &cloud_resource_name(&id.job, id.attempt),
                &pp,
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => Ok(()),
            // Every later report of the attempt is told so too.
            Err(kube::Error::Api(s)) if s.code == 404 => {
                self.reports.persist_failed(id);
                Err(PersistError::AttemptGone)
            }
            Err(e) => {
                self.reports.persist_failed(id);
                Err(PersistError::Write(e))
            }
        }
    }
}
