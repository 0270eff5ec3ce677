//! The MachineClasses every controller reads: one cluster-wide watch per operator process,
//! cached (classes are few and small), started with the [`Context`](crate::controller::Context).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};

use super::usage::ClassRefusal;
use crate::crd::MachineClass;

/// How long a lookup waits for the first list of classes after the operator started.
const FIRST_LIST: Duration = Duration::from_secs(10);

/// The cached MachineClasses, or none when the operator may not read them.
pub struct Classes {
    store: Option<Store<MachineClass>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Classes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Classes")
            .field("enabled", &self.store.is_some())
            .finish()
    }
}

impl Classes {
    /// Starts the watch (`enabled`: the operator may read cluster-scoped objects). Must run
    /// inside a Tokio runtime.
    pub fn start(client: Client, enabled: bool) -> Self {
        if !enabled {
            return Self {
                store: None,
                task: None,
            };
        }
        let (reader, writer) = reflector::store();
        let stream = watcher(Api::<MachineClass>::all(client), watcher::Config::default())
            .default_backoff()
            .reflect(writer)
            .applied_objects();
        let task = tokio::spawn(async move {
            stream
                .for_each(|res| async move {
                    if let Err(e) = res {
                        tracing::debug!(error = %e, "MachineClass watch");
                    }
                })
                .await
        });
        Self {
            store: Some(reader),
            task: Some(task),
        }
    }

    /// The class `name`, once the first list arrived.
    pub async fn get(&self, name: &str) -> Result<Arc<MachineClass>, ClassRefusal> {
        let store = self.store.as_ref().ok_or(ClassRefusal::Unavailable)?;
        if tokio::time::timeout(FIRST_LIST, store.wait_until_ready())
            .await
            .is_err()
        {
            tracing::warn!("MachineClass cache not filled yet; treating the class as missing");
        }
        store
            .get(&ObjectRef::new(name))
            .ok_or_else(|| ClassRefusal::NotFound(name.to_string()))
    }
}

impl Drop for Classes {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}
