//! Persisting what workloads report into the attempt's CloudResource status (`status.report`),
//! by the replica that verified the report, before it answers. A standby accepts reports as well
//! as the leader.
//!
//! Exit reports are written at once, every time, by every replica (the wrapper gets 200 only
//! once the exit is in the API): an exit never lives only in one process's memory, and a restart
//! loses none. Heartbeats and progress are written on no timer by the leader, whose controller
//! reads them from memory; a standby writes its first one of an attempt at once and then at most
//! once per `interval` (`costRefreshSeconds`), so that the leader learns of heartbeats that
//! reached only a standby. A replica that becomes leader grants running attempts a heartbeat
//! grace from that moment instead of relying on persisted heartbeats. The decisions are
//! [`super::reports::persist_due`] and [`super::reports::alive_since`].
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
use crate::crd::CloudResource;

/// Field manager of the report writes.
pub const FIELD_MANAGER: &str = "runctl-callback";
/// Default: a standby persists an attempt's heartbeats and progress at most this often (the
/// default `costRefreshSeconds`; the operator passes its configured value).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1200);

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

/// Writes the reports recorded in [`Reports`] into CloudResource status: exits at once, a
/// standby's heartbeats and progress throttled, the leader's heartbeats and progress not at all.
pub struct Persister {
    client: Client,
    reports: Arc<Reports>,
    interval: Duration,
}

impl Persister {
    /// A persister of what `reports` holds, writing with `client`, a standby's heartbeats at
    /// most every `interval`.
    pub fn new(client: Client, reports: Arc<Reports>, interval: Duration) -> Self {
        Self {
            client,
            reports,
            interval,
        }
    }

    /// Persists what attempt `id` reported (recorded in the store at `now`) when it is due; an
    /// exit always. `leading`: this replica holds the Lease (its controller reads the store).
    pub async fn persist(
        &self,
        id: &AttemptId,
        exit: bool,
        leading: bool,
        now: Timestamp,
    ) -> Result<(), PersistError> {
        let Some(body) = self
            .reports
            .due_for_persisting(id, exit, leading, now, self.interval)
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
            .patch_status(&id.cloud_resource_name(), &pp, &Patch::Merge(&patch))
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
