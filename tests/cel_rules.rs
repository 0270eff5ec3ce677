//! The CRDs' CEL rules evaluated with kube's CEL validator (the same evaluation the API test
//! server does at admission): each invalid spec is rejected with the message a user sees, and
//! every valid example passes.

use serde_json::{Value, json};

fn schema() -> Value {
    let crd = serde_json::to_value(runctl::crd::of_kind("CloudResource")).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

fn object(spec: Value) -> Value {
    json!({"apiVersion": "runctl.dev/v1alpha1", "kind": "CloudResource", "metadata": {"name": "x"}, "spec": spec})
}

fn errors(spec: Value, old: Option<Value>) -> Vec<String> {
    let old = old.map(object);
    match kube::core::cel::Validator::new().validate(&schema(), &object(spec), old.as_ref()) {
        Ok(()) => vec![],
        Err(e) => e
            .into_vec()
            .into_iter()
            .map(|e| format!("{}: {}", e.field_path, e.message))
            .collect(),
    }
}

#[test]
fn valid_specs_pass() {
    let valid = [
        json!({"provider": "sim", "instanceType": "sim.a100"}),
        json!({"provider": "aws", "instanceType": "g5.xlarge", "region": "us-east-1", "spot": true, "maxPricePerHour": 0.6}),
        json!({"provider": "runpod", "gpuType": "NVIDIA H100 80GB HBM3", "gpuCount": 2, "workload": {"image": "pytorch/pytorch:2.5"}}),
        json!({"provider": "lyceum", "gpuType": "a100", "gpuCount": 4, "workload": {"image": "x", "env": [{"name": "A", "value": "1"}]}}),
    ];
    for spec in valid {
        assert_eq!(errors(spec.clone(), None), Vec::<String>::new(), "{spec}");
    }
}

#[test]
fn invalid_specs_are_rejected_with_a_clear_message() {
    let cases = [
        (
            json!({"provider": "aws"}),
            "provider aws needs spec.instanceType",
        ),
        (
            json!({"provider": "runpod", "workload": {"image": "x"}}),
            "needs spec.gpuType",
        ),
        (
            json!({"provider": "lyceum", "gpuType": "a100", "gpuCount": 3}),
            "1, 2, 4 or 8 GPUs",
        ),
        (
            json!({"provider": "runpod", "gpuType": "g", "spot": true}),
            "no spot",
        ),
        (
            json!({"provider": "aws", "instanceType": "g5.xlarge", "maxPricePerHour": 1.0}),
            "needs spot: true",
        ),
        (
            json!({"provider": "sim", "aws": {"amiId": "ami-1"}}),
            "only valid with provider aws",
        ),
        (
            json!({"provider": "lyceum", "gpuType": "a100", "workload": {"image": "x"}, "lyceum": {"mode": "Vm"}}),
            "Lyceum VMs take no start-up script",
        ),
        (
            json!({"provider": "sim", "workload": {"image": "x", "env": [{"name": "1BAD", "value": "v"}]}}),
            "C identifiers",
        ),
        (
            json!({"provider": "sim", "workload": {"image": "x", "env": [{"name": "A"}]}}),
            "exactly one of value or valueFrom",
        ),
        (
            json!({"provider": "sim", "workload": {"image": "has space"}}),
            "image must be",
        ),
        (
            json!({"provider": "sim", "tags": {"runctl.dev/owner": "me"}}),
            "reserved",
        ),
        (
            json!({"provider": "sim", "region": "US East"}),
            "region must be",
        ),
    ];
    for (spec, want) in cases {
        let errs = errors(spec.clone(), None);
        assert!(
            errs.iter().any(|e| e.contains(want)),
            "{spec} should fail with {want:?}, got {errs:?}"
        );
    }
}

#[test]
fn placement_is_immutable_on_update() {
    let old = json!({"provider": "aws", "instanceType": "g5.xlarge", "region": "us-east-1"});
    let cases = [
        (
            json!({"provider": "sim", "instanceType": "g5.xlarge", "region": "us-east-1"}),
            "provider is immutable",
        ),
        (
            json!({"provider": "aws", "instanceType": "g5.2xlarge", "region": "us-east-1"}),
            "instanceType is immutable",
        ),
        (
            json!({"provider": "aws", "instanceType": "g5.xlarge", "region": "eu-west-1"}),
            "region is immutable",
        ),
        (
            json!({"provider": "aws", "instanceType": "g5.xlarge"}),
            "cannot be added or removed",
        ),
    ];
    for (spec, want) in cases {
        let errs = errors(spec.clone(), Some(old.clone()));
        assert!(
            errs.iter().any(|e| e.contains(want)),
            "{spec} should fail with {want:?}, got {errs:?}"
        );
    }
    let same_with_new_policy = json!({"provider": "aws", "instanceType": "g5.xlarge", "region": "us-east-1", "deletionPolicy": "Orphan"});
    assert_eq!(
        errors(same_with_new_policy, Some(old)),
        Vec::<String>::new()
    );
}

fn class_errors(spec: Value, old: Option<Value>) -> Vec<String> {
    let crd = serde_json::to_value(runctl::crd::of_kind("MachineClass")).unwrap();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let obj = |spec: Value| json!({"apiVersion": "runctl.dev/v1alpha1", "kind": "MachineClass", "metadata": {"name": "c"}, "spec": spec});
    let old = old.map(obj);
    match kube::core::cel::Validator::new().validate(schema, &obj(spec), old.as_ref()) {
        Ok(()) => vec![],
        Err(e) => e.into_vec().into_iter().map(|e| e.message).collect(),
    }
}

#[test]
fn machine_class_rules() {
    let ami = json!({"amiId": "ami-0123456789abcdef0"});
    let valid = [
        json!({"provider": "sim"}),
        json!({"provider": "aws", "regions": ["us-east-1"], "aws": {"regionSettings": {"us-east-1": ami}}}),
        json!({"provider": "aws", "regions": ["us-east-1"]}),
        json!({"provider": "runpod", "allowedNamespaces": ["ml"], "runpod": {"networkVolumeId": "v"}}),
    ];
    for spec in valid {
        assert_eq!(
            class_errors(spec.clone(), None),
            Vec::<String>::new(),
            "{spec}"
        );
    }
    let cases = [
        (
            json!({"provider": "runpod", "aws": {}}),
            "spec.aws is only valid with provider aws",
        ),
        (
            json!({"provider": "aws", "lyceum": {}}),
            "spec.lyceum is only valid with provider lyceum",
        ),
        (
            json!({"provider": "runpod", "regions": ["us-east-1"]}),
            "has no regions runctl can choose",
        ),
        (
            json!({"provider": "aws", "regions": ["us-east-1", "eu-west-1"], "aws": {"regionSettings": {"us-east-1": ami}}}),
            "every region in spec.regions needs an entry in aws.regionSettings",
        ),
        (
            json!({"provider": "sim", "regions": ["US East"]}),
            "regions must be lower-case",
        ),
        (
            json!({"provider": "runpod", "runpod": {"volumeGb": 10, "networkVolumeId": "v"}}),
            "either a new volume (volumeGb) or a network volume",
        ),
    ];
    for (spec, want) in cases {
        let errs = class_errors(spec.clone(), None);
        assert!(
            errs.iter().any(|e| e.contains(want)),
            "{spec}: want {want:?}, got {errs:?}"
        );
    }
    // The provider is immutable.
    let errs = class_errors(json!({"provider": "aws"}), Some(json!({"provider": "sim"})));
    assert!(
        errs.iter().any(|e| e.contains("provider is immutable")),
        "{errs:?}"
    );
}

fn job_errors(spec: Value) -> Vec<String> {
    let crd = serde_json::to_value(runctl::crd::of_kind("TrainingJob")).unwrap();
    let schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone();
    let obj = json!({"apiVersion": "runctl.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "x"}, "spec": spec});
    match kube::core::cel::Validator::new().validate(&schema, &obj, None) {
        Ok(()) => vec![],
        Err(e) => e.into_vec().into_iter().map(|e| e.message).collect(),
    }
}

/// Multi-node jobs only where machines reach each other; the rule's provider list is the one
/// providers' descriptors give.
#[test]
fn multi_node_jobs_need_a_provider_that_places_machines_together() {
    let job = |nodes: u32, placement: Value| json!({"nodes": nodes, "placement": placement, "workload": {"image": "x"}});
    for ok in [
        job(
            2,
            json!({"provider": "aws", "instanceType": "p4d.24xlarge"}),
        ),
        job(4, json!({"provider": "sim", "instanceType": "sim.a100"})),
        job(2, json!({"provider": "kubernetes", "gpuCount": 8})),
        job(
            2,
            json!({"provider": "auto", "gpuType": "a100", "allowedProviders": ["runpod", "aws"]}),
        ),
        job(1, json!({"provider": "runpod", "gpuType": "a100"})),
    ] {
        assert_eq!(job_errors(ok.clone()), Vec::<String>::new(), "{ok}");
    }
    let refused = job_errors(job(2, json!({"provider": "runpod", "gpuType": "a100"})));
    assert!(
        refused
            .iter()
            .any(|m| m.contains("needs placement.provider aws, sim, kubernetes or auto")),
        "{refused:?}"
    );
    let refused = job_errors(job(
        2,
        json!({"provider": "auto", "gpuType": "a100", "allowedProviders": ["runpod", "lyceum"]}),
    ));
    assert!(
        refused
            .iter()
            .any(|m| m.contains("needs aws, sim or kubernetes among placement.allowedProviders")),
        "{refused:?}"
    );
}
