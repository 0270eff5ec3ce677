//! Creating and adopting pods. RunPod has no idempotency key and pod names are not unique, so a
//! pod carries the key's deterministic name plus the `RUNCTL_OWNER` / `RUNCTL_INSTALLATION` env
//! markers; create lists first and adopts a match, lists again after an ambiguous failure, and
//! when several pods match keeps the oldest (`createdAt`) and terminates the rest.

use std::cmp::Ordering;

use jiff::Timestamp;

use crate::crd::cloud_resource::RunPodCloud;
use crate::provider::identity::{ENV_INSTALLATION, ENV_OWNER};
use crate::provider::workload::shell_quote;
use crate::provider::{MachineSpec, ProviderError, ResourceKey};

use super::api::{CreatePod, GpuRequest, Pod};
use super::deadman;

/// The v2 `cloud` value of a spec (Secure unless Community is asked for).
pub fn cloud_of(spec: &MachineSpec) -> &'static str {
    match spec.runpod.cloud {
        Some(RunPodCloud::Community) => "COMMUNITY",
        Some(RunPodCloud::Secure) | None => "SECURE",
    }
}

/// Rejects placements RunPod's v2 API cannot serve (spot, no GPU type), before any call.
pub fn validate_placement(spec: &MachineSpec) -> Result<(), ProviderError> {
    if spec.spot {
        return Err(ProviderError::InvalidSpec {
            message: "RunPod's REST API v2 offers no spot/interruptible pods (its create body has no such field); \
                      set spot: false"
                .into(),
        });
    }
    if spec.max_price_per_hour.is_some() {
        return Err(ProviderError::InvalidSpec {
            message: "maxPricePerHour is a spot bid ceiling and RunPod v2 has no spot pods".into(),
        });
    }
    if spec.gpu_type.as_deref().is_none_or(str::is_empty) {
        return Err(ProviderError::InvalidSpec {
            message: "RunPod needs spec.gpuType, a GPU id such as 'NVIDIA H100 80GB HBM3'".into(),
        });
    }
    Ok(())
}

/// Rejects specs RunPod's v2 API cannot create, before any call.
pub fn validate(spec: &MachineSpec) -> Result<(), ProviderError> {
    validate_placement(spec)?;
    if spec.workload.is_none() {
        return Err(ProviderError::InvalidSpec {
            message: "RunPod pods always run a container: spec.workload (image) is required".into(),
        });
    }
    Ok(())
}

/// The create body for `key` and `spec` (validated). The workload's argv travels as the v2
/// `args` string, each word shell-quoted; env gets runctl's owner markers and, where the pod is
/// armed to delete itself, the wrapper's settings ([`deadman::launch`]: `api_url` is RunPod's
/// REST v2 base URL, `now` the create time the lifetime deadline counts from).
pub fn create_body(
    key: &ResourceKey,
    spec: &MachineSpec,
    api_url: &str,
    now: Timestamp,
) -> Result<CreatePod, ProviderError> {
    validate(spec)?;
    let (Some(workload), Some(gpu)) = (&spec.workload, &spec.gpu_type) else {
        return Err(ProviderError::InvalidSpec {
            message: "RunPod needs a workload and a GPU type".into(),
        });
    };
    let launch = deadman::launch(workload, spec.max_lifetime_seconds, api_url, now)?;
    let argv = launch.argv;
    let args = (!argv.is_empty()).then(|| {
        argv.iter()
            .map(|a| shell_quote(a))
            .collect::<Vec<_>>()
            .join(" ")
    });
    let mut env = launch.env;
    env.insert(ENV_OWNER.into(), key.uid.clone());
    env.insert(ENV_INSTALLATION.into(), key.installation.clone());
    Ok(CreatePod {
        name: key.machine_name(),
        image: workload.image.clone(),
        gpu: GpuRequest {
            id: gpu.clone(),
            count: spec.gpu_count.max(1),
        },
        cloud: cloud_of(spec),
        data_center_ids: spec.runpod.data_center_ids.clone(),
        args,
        disk: spec.runpod.container_disk_gb,
        ports: spec.runpod.ports.clone(),
        mounts: mounts_of(&spec.runpod),
        env,
    })
}

/// Where a pod's volume is mounted when the options name no path (RunPod's convention).
pub const DEFAULT_VOLUME_PATH: &str = "/workspace";

/// The create body's `mounts`: a new persistent volume or an existing network volume.
fn mounts_of(o: &crate::crd::cloud_resource::RunPodOptions) -> Option<serde_json::Value> {
    let path = o
        .volume_mount_path
        .clone()
        .unwrap_or_else(|| DEFAULT_VOLUME_PATH.into());
    match (&o.network_volume_id, o.volume_gb) {
        (Some(id), _) => Some(serde_json::json!({"network": [{"volumeId": id, "path": path}]})),
        (None, Some(size)) => Some(serde_json::json!({"persistent": {"size": size, "path": path}})),
        (None, None) => None,
    }
}

/// True when `pod` is the pod of `key`: deterministic name and both env markers.
pub fn matches_key(pod: &Pod, key: &ResourceKey) -> bool {
    pod.name.as_deref() == Some(key.machine_name().as_str())
        && pod.env_value(ENV_OWNER) == Some(key.uid.as_str())
        && pod.env_value(ENV_INSTALLATION) == Some(key.installation.as_str())
}

/// True when `pod` belongs to `installation` (it carries both markers).
pub fn owned_by(pod: &Pod, installation: &str) -> bool {
    pod.env_value(ENV_INSTALLATION) == Some(installation) && pod.env_value(ENV_OWNER).is_some()
}

/// Oldest first: by `createdAt` (unparseable last), then id.
pub fn oldest_first(a: &Pod, b: &Pod) -> Ordering {
    match (a.created(), b.created()) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
    .then_with(|| a.id.cmp(&b.id))
}

/// The pods of `key` in `pods`, split into the one to keep and the duplicates to terminate.
/// Live pods (not `TERMINATED`, not deleted by us) win; among them the oldest. Without a live
/// pod the newest ended one is reported and nothing is terminated.
pub fn choose<'a>(
    pods: &'a [Pod],
    key: &ResourceKey,
    deleted: impl Fn(&str) -> bool,
) -> Option<(&'a Pod, Vec<&'a Pod>)> {
    let mut mine: Vec<&Pod> = pods.iter().filter(|p| matches_key(p, key)).collect();
    mine.sort_by(|a, b| oldest_first(a, b));
    let (mut live, ended): (Vec<&Pod>, Vec<&Pod>) = mine
        .into_iter()
        .partition(|p| p.status.as_deref() != Some("TERMINATED") && !deleted(&p.id));
    if live.is_empty() {
        return ended.last().map(|p| (*p, Vec::new()));
    }
    let keep = live.remove(0);
    Some((keep, live))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::crd::cloud_resource::RunPodOptions;
    use crate::provider::Workload;
    use crate::provider::workload::Reporting;

    const URL: &str = "https://api.runpod.io/v2";

    fn now() -> Timestamp {
        Timestamp::from_second(1_000).expect("time")
    }

    fn key() -> ResourceKey {
        ResourceKey {
            installation: "prod".into(),
            namespace: "ml".into(),
            name: "train".into(),
            uid: "6f1c2a9e-1111".into(),
            attempt: 2,
        }
    }

    fn spec() -> MachineSpec {
        MachineSpec {
            gpu_type: Some("NVIDIA H100 80GB HBM3".into()),
            gpu_count: 2,
            workload: Some(Workload {
                image: "ghcr.io/acme/train:1".into(),
                command: vec!["python".into()],
                args: vec!["train.py".into(), "--lr".into(), "3e-4 x".into()],
                env: BTreeMap::from([("HF_TOKEN".into(), "secret".into())]),
                reporting: None,
            }),
            runpod: RunPodOptions {
                cloud: Some(RunPodCloud::Community),
                data_center_ids: vec!["US-KS-2".into()],
                container_disk_gb: Some(50),
                ports: vec!["22/tcp".into()],
                ..Default::default()
            },
            ..MachineSpec::default()
        }
    }

    fn pod(id: &str, name: &str, uid: &str, status: &str, created: &str) -> Pod {
        serde_json::from_value(json!({
            "id": id, "name": name, "status": status, "createdAt": created,
            "env": {"RUNCTL_OWNER": uid, "RUNCTL_INSTALLATION": "prod"},
        }))
        .expect("pod")
    }

    #[test]
    fn body_carries_spec_markers_and_quoted_args() {
        let b = create_body(&key(), &spec(), URL, now()).expect("body");
        assert_eq!(b.name, "runctl-train-6f1c2a9e-a2");
        assert_eq!(
            b.gpu,
            GpuRequest {
                id: "NVIDIA H100 80GB HBM3".into(),
                count: 2
            }
        );
        assert_eq!(b.cloud, "COMMUNITY");
        assert_eq!(b.data_center_ids, vec!["US-KS-2"]);
        assert_eq!(b.disk, Some(50));
        assert_eq!(b.ports, vec!["22/tcp"]);
        assert_eq!(b.args.as_deref(), Some("python train.py --lr '3e-4 x'"));
        assert_eq!(b.env["RUNCTL_OWNER"], "6f1c2a9e-1111");
        assert_eq!(b.env["RUNCTL_INSTALLATION"], "prod");
        assert_eq!(b.env["HF_TOKEN"], "secret");
        assert!(!b.env.contains_key("RUNCTL_RUNPOD_API_URL"), "not armed");
    }

    #[test]
    fn a_lifetime_arms_the_pod_with_its_deadline() {
        let mut s = spec();
        s.max_lifetime_seconds = Some(7_200);
        let b = create_body(&key(), &s, URL, now()).expect("body");
        assert!(
            b.args
                .as_deref()
                .is_some_and(|a| a.starts_with("/bin/sh -c '"))
        );
        assert_eq!(b.env["RUNCTL_DEADLINE"], "8200");
        assert_eq!(b.env["RUNCTL_RUNPOD_API_URL"], URL);
        assert_eq!(b.env["RUNCTL_OWNER"], "6f1c2a9e-1111");
    }

    #[test]
    fn wrapped_workloads_run_the_wrapper_and_empty_argv_keeps_the_image_cmd() {
        let mut s = spec();
        if let Some(w) = s.workload.as_mut() {
            w.reporting = Some(Reporting {
                callback_url: "https://op/cb".into(),
                token: "t".into(),
                heartbeat_interval_seconds: 5,
                self_terminate_after_seconds: 60,
                report_grace_seconds: 90,
            });
        }
        let b = create_body(&key(), &s, URL, now()).expect("body");
        let args = b.args.expect("args");
        assert!(args.starts_with("/bin/sh -c '"), "{args}");
        assert!(
            args.ends_with("runctl-wrapper python train.py --lr '3e-4 x'"),
            "{args}"
        );
        assert_eq!(b.env["RUNCTL_REPORT_TOKEN"], "t");
        assert_eq!(
            b.env["RUNCTL_RUNPOD_API_URL"], URL,
            "a reporting pod deletes itself when done"
        );

        let mut s = spec();
        if let Some(w) = s.workload.as_mut() {
            w.command.clear();
            w.args.clear();
        }
        assert_eq!(
            create_body(&key(), &s, URL, now()).expect("body").args,
            None
        );
        s.runpod = RunPodOptions::default();
        assert_eq!(
            create_body(&key(), &s, URL, now()).expect("body").cloud,
            "SECURE"
        );
    }

    #[test]
    fn invalid_specs_are_refused_with_reasons() {
        type Change = Box<dyn Fn(&mut MachineSpec)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|s| s.spot = true), "spot"),
            (
                Box::new(|s| s.max_price_per_hour = Some(1.0)),
                "maxPricePerHour",
            ),
            (Box::new(|s| s.gpu_type = None), "gpuType"),
            (Box::new(|s| s.workload = None), "workload"),
        ];
        for (change, word) in cases {
            let mut s = spec();
            change(&mut s);
            let e = create_body(&key(), &s, URL, now()).expect_err(word);
            assert_eq!(e.reason(), "InvalidSpec");
            assert!(e.message().contains(word), "{e}");
        }
    }

    #[test]
    fn matching_needs_name_and_both_markers() {
        let k = key();
        let name = k.machine_name();
        assert!(matches_key(
            &pod("a", &name, &k.uid, "RUNNING", "2026-01-01T00:00:00Z"),
            &k
        ));
        assert!(!matches_key(
            &pod("a", "other", &k.uid, "RUNNING", "2026-01-01T00:00:00Z"),
            &k
        ));
        assert!(!matches_key(
            &pod(
                "a",
                &name,
                "someone-else",
                "RUNNING",
                "2026-01-01T00:00:00Z"
            ),
            &k
        ));
        let mut foreign = pod("a", &name, &k.uid, "RUNNING", "2026-01-01T00:00:00Z");
        foreign.env = serde_json::from_value(
            json!({"RUNCTL_OWNER": k.uid, "RUNCTL_INSTALLATION": "staging"}),
        )
        .expect("env");
        assert!(!matches_key(&foreign, &k));
        assert!(!owned_by(&foreign, "prod") && owned_by(&foreign, "staging"));
    }

    #[test]
    fn oldest_live_pod_is_kept_and_the_rest_are_duplicates() {
        let k = key();
        let n = k.machine_name();
        let pods = vec![
            pod("c", &n, &k.uid, "RUNNING", "2026-01-01T00:00:03Z"),
            pod("a", &n, &k.uid, "TERMINATED", "2026-01-01T00:00:00Z"),
            pod("b", &n, &k.uid, "PROVISIONING", "2026-01-01T00:00:01Z"),
            pod("d", &n, &k.uid, "RUNNING", "garbage"),
            pod("x", "other", &k.uid, "RUNNING", "2025-01-01T00:00:00Z"),
        ];
        let (keep, dups) = choose(&pods, &k, |_| false).expect("match");
        assert_eq!(keep.id, "b");
        assert_eq!(
            dups.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
            vec!["c", "d"]
        );
        let (keep, dups) = choose(&pods, &k, |id| id == "b").expect("match");
        assert_eq!((keep.id.as_str(), dups.len()), ("c", 1));
        let ended = vec![pod("a", &n, &k.uid, "TERMINATED", "2026-01-01T00:00:00Z")];
        let (keep, dups) = choose(&ended, &k, |_| false).expect("ended match");
        assert_eq!((keep.id.as_str(), dups.len()), ("a", 0));
        assert!(choose(&pods[4..], &k, |_| false).is_none());
    }

    #[test]
    fn volumes_become_mounts() {
        use crate::crd::cloud_resource::RunPodOptions;
        assert_eq!(mounts_of(&RunPodOptions::default()), None);
        let new = RunPodOptions {
            volume_gb: Some(20),
            ..Default::default()
        };
        assert_eq!(
            mounts_of(&new),
            Some(serde_json::json!({"persistent": {"size": 20, "path": "/workspace"}}))
        );
        let network = RunPodOptions {
            network_volume_id: Some("vol-1".into()),
            volume_mount_path: Some("/data".into()),
            ..Default::default()
        };
        assert_eq!(
            mounts_of(&network),
            Some(serde_json::json!({"network": [{"volumeId": "vol-1", "path": "/data"}]}))
        );
    }
}
