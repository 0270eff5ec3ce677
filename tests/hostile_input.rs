//! Hostile and bad input: every manifest in `tests/corpus/invalid/` is sent to the API test
//! server (which enforces runctl's CRD schemas and CEL rules like a real API server) and must be
//! rejected with the message the file's `# expect:` line names, leaving nothing behind. Files
//! with an `# update:` line hold two documents: the first is created, the second is applied as
//! a merge patch and must be rejected, leaving the object unchanged. Property tests of the pure
//! code that handles provider answers are in `tests/hostile/`.

mod hostile;
mod support;

use std::path::{Path, PathBuf};

use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use serde::Deserialize;
use support::TestEnv;

struct Case {
    file: String,
    expect: String,
    update: bool,
    docs: Vec<serde_json::Value>,
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/invalid")
}

fn load() -> Vec<Case> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("corpus directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("readable corpus file");
            let file = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let expect = text
                .lines()
                .find_map(|l| l.strip_prefix("# expect: "))
                .unwrap_or_else(|| panic!("{file} has no '# expect:' line"))
                .to_string();
            let update = text.lines().any(|l| l.starts_with("# update:"));
            let docs = serde_yaml::Deserializer::from_str(&text)
                .map(|d| {
                    serde_json::Value::deserialize(d).unwrap_or_else(|e| panic!("{file}: {e}"))
                })
                .collect();
            Case {
                file,
                expect,
                update,
                docs,
            }
        })
        .collect()
}

fn api_for(env: &TestEnv, obj: &serde_json::Value) -> Api<DynamicObject> {
    let kind = obj["kind"].as_str().unwrap_or("CloudResource");
    let plural = match kind {
        "TrainingJob" => "trainingjobs",
        "MachineClass" => "machineclasses",
        _ => "cloudresources",
    };
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("runctl.dev", "v1alpha1", kind),
        plural,
    );
    if kind == "MachineClass" {
        // Cluster-scoped.
        return Api::all_with(env.client.clone(), &ar);
    }
    Api::namespaced_with(env.client.clone(), &env.ns, &ar)
}

fn dynamic(value: &serde_json::Value) -> DynamicObject {
    serde_json::from_value(value.clone()).expect("corpus documents are objects with metadata")
}

/// The rejection of a write, as (code, message); `None` when it was accepted.
fn rejection<T>(result: Result<T, kube::Error>) -> Option<(u16, String)> {
    match result {
        Ok(_) => None,
        Err(kube::Error::Api(s)) => Some((s.code, s.message)),
        Err(e) => Some((0, e.to_string())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_invalid_manifest_is_rejected_with_an_actionable_message() {
    let cases = load();
    assert!(
        cases.len() >= 50,
        "the corpus holds at least 50 manifests, found {}",
        cases.len()
    );
    let trainingjobs = cases
        .iter()
        .filter(|c| c.docs[0]["kind"] == "TrainingJob")
        .count();
    assert!(
        trainingjobs >= 10,
        "TrainingJobs are covered too ({trainingjobs})"
    );
    let env = TestEnv::start(support::fast_sim()).await;
    let mut failures = Vec::new();
    for case in &cases {
        let first = &case.docs[0];
        let api = api_for(&env, first);
        let name = first["metadata"]["name"]
            .as_str()
            .unwrap_or("x")
            .to_string();
        let outcome = if case.update {
            if let Err(e) = api.create(&PostParams::default(), &dynamic(first)).await {
                failures.push(format!("{}: the base object was rejected: {e}", case.file));
                continue;
            }
            let before = api
                .get(&name)
                .await
                .ok()
                .and_then(|o| o.metadata.resource_version);
            let patch = case.docs.get(1).cloned().unwrap_or_default();
            let r = rejection(
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await,
            );
            let after = api
                .get(&name)
                .await
                .ok()
                .and_then(|o| o.metadata.resource_version);
            if before != after {
                failures.push(format!(
                    "{}: a rejected update changed the object",
                    case.file
                ));
            }
            let _ = api.delete(&name, &DeleteParams::default()).await;
            r
        } else {
            let r = rejection(api.create(&PostParams::default(), &dynamic(first)).await);
            if r.is_some() && api.get_opt(&name).await.ok().flatten().is_some() {
                failures.push(format!(
                    "{}: a rejected create left an object behind",
                    case.file
                ));
            }
            if r.is_none() {
                let _ = api.delete(&name, &DeleteParams::default()).await;
            }
            r
        };
        match outcome {
            None => failures.push(format!(
                "{}: accepted, expected a rejection mentioning {:?}",
                case.file, case.expect
            )),
            Some((code, message)) => {
                if !(400..500).contains(&code) {
                    failures.push(format!(
                        "{}: answered {code} instead of a 4xx: {message}",
                        case.file
                    ));
                } else if !message.contains(&case.expect) {
                    failures.push(format!(
                        "{}: message does not mention {:?}: {message}",
                        case.file, case.expect
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} corpus cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
