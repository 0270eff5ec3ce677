//! The provider conformance suite run against the `kubernetes` provider: the in-process API
//! test server, or (`RUNCTL_TEST_BACKEND=real`) a real kube-apiserver, with the test playing
//! the kubelet (it patches Pod status). Faults cannot be injected into either, so the fault
//! checks are skipped here; `errors.rs` of the provider has their classification.

#[path = "conformance/mod.rs"]
mod conformance;
mod support;

use std::sync::Arc;

use async_trait::async_trait;
use conformance::{Drive, Fault, Harness, INSTALLATION};
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use runctl::provider::kubernetes::{KubernetesConfig, KubernetesProvider};
use runctl::provider::{MachineSpec, Provider, ResourceState, Workload, reasons};
use serde_json::json;
use support::TestEnv;

struct KubernetesHarness {
    client: Client,
    provider: Arc<dyn Provider>,
    _env: TestEnv,
}

impl KubernetesHarness {
    async fn new() -> Self {
        let env = TestEnv::start_with(Default::default()).await;
        let config = KubernetesConfig {
            enabled: Some(true),
            price_per_gpu_hour: 0.75,
            ..KubernetesConfig::default()
        };
        let client = env.client.clone();
        let provider: Arc<dyn Provider> = Arc::new(KubernetesProvider::new(
            client.clone(),
            INSTALLATION,
            config,
        ));
        Self {
            client,
            provider,
            _env: env,
        }
    }

    /// The Pods of the conformance keys (namespace `default`).
    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    async fn status(&self, id: &str, status: serde_json::Value) -> bool {
        let Some((_, name)) = id.split_once('/') else {
            return false;
        };
        self.pods()
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": status })),
            )
            .await
            .is_ok()
    }
}

fn terminated(code: i32) -> serde_json::Value {
    json!([{"name": "workload", "image": "ghcr.io/runctl/train:1", "imageID": "",
        "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": code, "reason": "Completed"}}}])
}

#[async_trait]
impl Harness for KubernetesHarness {
    fn provider(&self) -> Arc<dyn Provider> {
        self.provider.clone()
    }

    fn spec(&self) -> MachineSpec {
        MachineSpec {
            gpu_type: Some("NVIDIA-L4".into()),
            gpu_count: 1,
            workload: Some(Workload {
                image: "ghcr.io/runctl/train:1".into(),
                command: vec!["python".into(), "train.py".into()],
                ..Workload::default()
            }),
            ..MachineSpec::default()
        }
    }

    async fn live_machines(&self, uid: &str) -> usize {
        let selector = format!("runctl.dev/owner-uid={uid}");
        let pods = self
            .pods()
            .list(&ListParams::default().labels(&selector))
            .await
            .expect("list Pods");
        pods.items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| {
                !matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                )
            })
            .count()
    }

    async fn inject(&self, _fault: Fault) -> bool {
        false
    }

    async fn drive(&self, id: &str, event: Drive) -> bool {
        match event {
            Drive::Running => {
                self.status(
                    id,
                    json!({"phase": "Running", "podIP": "10.244.1.9",
                           "conditions": [{"type": "PodScheduled", "status": "True"}]}),
                )
                .await
            }
            Drive::Interrupted => {
                self.status(
                    id,
                    json!({"phase": "Failed", "reason": "Evicted",
                           "message": "The node was low on resource: memory."}),
                )
                .await
            }
            Drive::ExitSuccess => {
                self.status(
                    id,
                    json!({"phase": "Succeeded", "containerStatuses": terminated(0)}),
                )
                .await
            }
            Drive::ExitFailure(code) => {
                self.status(
                    id,
                    json!({"phase": "Failed", "containerStatuses": terminated(code)}),
                )
                .await
            }
            Drive::ProviderFailure => self.status(id, json!({"phase": "Unknown"})).await,
            Drive::Vanish => {
                let Some((_, name)) = id.split_once('/') else {
                    return false;
                };
                self.pods()
                    .delete(name, &DeleteParams::default().grace_period(0))
                    .await
                    .is_ok()
            }
            Drive::Stopped => false,
        }
    }

    fn expected(&self, event: Drive) -> Option<(ResourceState, &'static str)> {
        Some(match event {
            Drive::Running => (ResourceState::Running, reasons::RUNNING),
            Drive::Stopped => return None,
            Drive::Interrupted => (ResourceState::Error, reasons::CAPACITY_LOST),
            Drive::ExitSuccess => (ResourceState::Terminated, reasons::COMPLETED),
            Drive::ExitFailure(_) => (ResourceState::Error, reasons::WORKLOAD_FAILED),
            Drive::ProviderFailure => (ResourceState::Unknown, reasons::UNRECOGNIZED),
            Drive::Vanish => (ResourceState::Error, reasons::DISAPPEARED),
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_passes() {
    let h = KubernetesHarness::new().await;
    conformance::run_all(&h).await;
}
