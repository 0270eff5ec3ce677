//! The envtest crate against itself: the control plane starts, its admin and ServiceAccount
//! identities authenticate, RBAC is enforced, kube-controller-manager collects garbage and
//! deletes namespaces, a restarted API server or etcd comes back with its data, and a dropped
//! control plane leaves no process behind.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use runctl_envtest::{Component, ControlPlane, Options, shared};

fn config_map(name: &str, owner: Option<&ConfigMap>) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            owner_references: owner.map(|o| {
                vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "ConfigMap".into(),
                    name: o.metadata.name.clone().unwrap_or_default(),
                    uid: o.metadata.uid.clone().unwrap_or_default(),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        },
        ..Default::default()
    }
}

async fn eventually<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_admin_reads_and_writes_and_the_version_is_the_pinned_release() {
    let cp = shared().await;
    let client = cp.client().await.unwrap();
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(version.major, "1");
    assert!(version.git_version.starts_with("v1."), "{version:?}");
    let ns = cp.create_namespace("admin").await.unwrap();
    let maps: Api<ConfigMap> = Api::namespaced(client, &ns);
    maps.create(&PostParams::default(), &config_map("a", None))
        .await
        .unwrap();
    assert!(maps.get_opt("a").await.unwrap().is_some());
}

#[tokio::test]
async fn a_service_account_gets_403_until_a_role_grants_the_verb() {
    let cp = shared().await;
    let ns = cp.create_namespace("rbac").await.unwrap();
    let sa = cp.service_account_client(&ns, "worker").await.unwrap();
    let maps: Api<ConfigMap> = Api::namespaced(sa, &ns);
    let denied = maps.list(&Default::default()).await.unwrap_err();
    assert!(
        matches!(&denied, kube::Error::Api(s) if s.code == 403),
        "{denied:?}"
    );

    let admin = cp.client().await.unwrap();
    let role = Role {
        metadata: ObjectMeta {
            name: Some("read-config".into()),
            ..Default::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["configmaps".into()]),
            verbs: vec!["list".into()],
            ..Default::default()
        }]),
    };
    Api::<Role>::namespaced(admin.clone(), &ns)
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    let binding = RoleBinding {
        metadata: ObjectMeta {
            name: Some("read-config".into()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: "read-config".into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: "worker".into(),
            namespace: Some(ns.clone()),
            ..Default::default()
        }]),
    };
    Api::<RoleBinding>::namespaced(admin, &ns)
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    eventually(10, "the role binding to take effect", || async {
        maps.list(&Default::default()).await.is_ok()
    })
    .await;
    let still_denied = maps
        .create(&PostParams::default(), &config_map("x", None))
        .await
        .unwrap_err();
    assert!(matches!(&still_denied, kube::Error::Api(s) if s.code == 403));
}

#[tokio::test]
async fn the_garbage_collector_deletes_dependents_and_namespaces_are_emptied() {
    let cp = shared().await;
    let client = cp.client().await.unwrap();
    let ns = cp.create_namespace("gc").await.unwrap();
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let owner = maps
        .create(&PostParams::default(), &config_map("owner", None))
        .await
        .unwrap();
    maps.create(
        &PostParams::default(),
        &config_map("dependent", Some(&owner)),
    )
    .await
    .unwrap();
    maps.delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    eventually(60, "the dependent to be collected", || async {
        maps.get_opt("dependent").await.unwrap().is_none()
    })
    .await;

    let namespaces: Api<Namespace> = Api::all(client);
    maps.create(&PostParams::default(), &config_map("left", None))
        .await
        .unwrap();
    namespaces
        .delete(&ns, &DeleteParams::default())
        .await
        .unwrap();
    eventually(60, "the namespace to be deleted", || async {
        namespaces.get_opt(&ns).await.unwrap().is_none()
    })
    .await;
}

#[tokio::test]
async fn a_restarted_api_server_and_etcd_keep_their_data_and_a_dropped_plane_leaves_nothing() {
    let cp = ControlPlane::start(Options {
        controller_manager: false,
        binaries: None,
    })
    .await
    .unwrap();
    let client = cp.client().await.unwrap();
    let ns = cp.create_namespace("restart").await.unwrap();
    let maps: Api<ConfigMap> = Api::namespaced(client, &ns);
    maps.create(&PostParams::default(), &config_map("kept", None))
        .await
        .unwrap();

    cp.restart(Component::KubeApiserver).await.unwrap();
    assert!(maps.get_opt("kept").await.unwrap().is_some());
    cp.stop(Component::Etcd);
    let without_etcd = tokio::time::timeout(Duration::from_secs(5), maps.get_opt("kept")).await;
    assert!(
        !matches!(without_etcd, Ok(Ok(_))),
        "no etcd, no answer: {without_etcd:?}"
    );
    cp.restart(Component::Etcd).await.unwrap();
    eventually(60, "reads to work again after etcd restarted", || async {
        matches!(maps.get_opt("kept").await, Ok(Some(_)))
    })
    .await;

    let dir = cp.state_dir().to_path_buf();
    let pids = pids_under(&dir);
    assert_eq!(pids.len(), 2, "etcd and kube-apiserver run from {dir:?}");
    drop(cp);
    assert!(!dir.exists(), "the state directory is removed");
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} was stopped"
        );
    }
}

/// Processes whose command line names `dir` (the control plane's state directory).
fn pids_under(dir: &std::path::Path) -> Vec<u32> {
    let needle = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(&needle))
                .unwrap_or(false)
        })
        .collect()
}

/// Run by `a_test_binary_that_aborts_leaves_no_process` in a child test process: starts a
/// control plane, says where its state is, and aborts the process (no destructor runs).
#[tokio::test]
#[ignore = "run by a_test_binary_that_aborts_leaves_no_process"]
async fn start_a_control_plane_and_abort() {
    let cp = ControlPlane::start(Options {
        controller_manager: true,
        binaries: None,
    })
    .await
    .unwrap();
    println!("STATE_DIR={}", cp.state_dir().display());
    std::process::abort();
}

#[test]
fn a_test_binary_that_aborts_leaves_no_process() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "start_a_control_plane_and_abort",
            "--ignored",
            "--nocapture",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success(), "the child aborts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let dir = stdout
        .lines()
        .find_map(|l| l.strip_prefix("STATE_DIR="))
        .unwrap_or_else(|| {
            panic!(
                "the child did not start a control plane:\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    // The kernel delivers the parent-death signal at once; give the children a moment to go.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = pids_under(std::path::Path::new(dir));
        if left.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "processes outlived the aborted test binary: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test]
async fn a_second_api_server_serves_the_same_cluster_with_its_own_flags() {
    let cp = shared().await;
    let ns = cp.create_namespace("second").await.unwrap();
    let second = cp
        .start_apiserver(&[
            "--enable-admission-plugins=OwnerReferencesPermissionEnforcement".into(),
        ])
        .await
        .unwrap();
    assert_ne!(second.url(), cp.url());
    let namespaces: Api<Namespace> = Api::all(second.client().await.unwrap());
    assert!(namespaces.get_opt(&ns).await.unwrap().is_some(), "one etcd");
    let sa = second.service_account_client(&ns, "viewer").await.unwrap();
    let denied = Api::<ConfigMap>::namespaced(sa, &ns)
        .list(&Default::default())
        .await
        .unwrap_err();
    assert!(matches!(&denied, kube::Error::Api(s) if s.code == 403));
}
