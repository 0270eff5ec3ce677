//! MachineClasses end to end (issue "Providers the way platform teams run them", item 2): a
//! job on a class gets the class's AMI, subnet, security group, instance profile, tags and root
//! volume in EC2's RunInstances (moto); a team's jobs pay with the class's credentials Secret (RunPod stand-in);
//! a job in a namespace the class does not allow, and an object naming a class whose settings do
//! not exist, rent nothing and say why. On both backends (`RUNCTL_TEST_BACKEND`).

mod support;

use kube::api::{Api, DeleteParams, PostParams};
use runctl::crd::cloud_resource::ResourceState;
use runctl::crd::training_job::{JobPhase, TrainingJob};
use runctl::crd::{CloudResource, MachineClass, ProviderKind, condition};
use runctl::provider::ProvidersConfig;
use support::jobs::test_job_config;
use support::{TestEnv, eventually, test_controller_config};

fn object<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).expect("a valid object")
}

/// Creates a MachineClass (cluster-scoped: named after the test's namespace so that tests on a
/// shared control plane do not meet).
async fn create_class(env: &TestEnv, base: &str, spec: serde_json::Value) -> String {
    let name = format!("{base}-{}", env.ns);
    let api: Api<MachineClass> = Api::all(env.client.clone());
    let class: MachineClass = object(serde_json::json!({
        "apiVersion": "runctl.dev/v1alpha1", "kind": "MachineClass",
        "metadata": {"name": name}, "spec": spec
    }));
    api.create(&PostParams::default(), &class)
        .await
        .expect("create the MachineClass");
    name
}

/// The class's `Ready` condition once its controller checked it.
async fn ready_of(
    env: &TestEnv,
    name: &str,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    let api: Api<MachineClass> = Api::all(env.client.clone());
    eventually(60, &format!("MachineClass {name} checked"), || async {
        let c = api.get(name).await.ok()?;
        condition::get(&c.status?.conditions, condition::READY).cloned()
    })
    .await
}

async fn delete_class(env: &TestEnv, name: &str) {
    let api: Api<MachineClass> = Api::all(env.client.clone());
    let _ = api.delete(name, &DeleteParams::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aws_class_sets_up_the_instance_and_is_checked_against_ec2() {
    use runctl_standins::aws::{Ec2Proxy, MotoServer};
    let moto = MotoServer::start().await.unwrap_or_else(|e| panic!("{e}"));
    let proxy = Ec2Proxy::start(&moto.url()).await.expect("start proxy");
    let ec2 = support::moto::ec2_client(&moto.url());
    let ami = support::moto::first_ami(&ec2).await;
    let (subnet, vpc) = support::moto::first_subnet(&ec2).await;
    let group = ec2
        .create_security_group()
        .group_name("training")
        .description("training machines")
        .vpc_id(&vpc)
        .send()
        .await
        .expect("a security group")
        .group_id()
        .expect("group id")
        .to_string();
    // moto launches with an instance profile only if its IAM knows it (an unsigned IAM call to
    // the same server: moto routes by the credential scope and checks no signature).
    let created = reqwest::Client::new()
        .post(moto.url())
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20261204/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0",
        )
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("Action=CreateInstanceProfile&InstanceProfileName=vision-training&Version=2010-05-08")
        .send()
        .await
        .expect("IAM CreateInstanceProfile");
    assert!(created.status().is_success(), "{:?}", created.text().await);

    let mut providers = ProvidersConfig::default();
    providers.aws.endpoint_url = Some(proxy.url());
    providers.aws.max_attempts = 1;
    providers.aws.enabled = Some(true);
    // No Price List endpoint here: the embedded table, labelled (provider_e2e covers the API).
    providers.aws.pricing.enabled = false;
    let env = TestEnv::start_with(providers).await;
    env.secret(
        "team-aws",
        &[
            ("accessKeyId", "AKIATESTING"),
            ("secretAccessKey", "testing-secret"),
        ],
    )
    .await;
    let checker = env.start_class_controller(test_controller_config("classes"));
    let good = create_class(
        &env,
        "aws-good",
        serde_json::json!({
            "provider": "aws",
            "credentialsSecretRef": {"namespace": env.ns, "name": "team-aws"},
            "allowedNamespaces": [env.ns],
            "tags": {"team": "vision"},
            "aws": {
                "regionSettings": {"us-east-1": {"amiId": ami, "subnetId": subnet, "securityGroupIds": [group]}},
                "iamInstanceProfile": "vision-training",
                "rootVolumeSizeGb": 321, "rootVolumeType": "gp3"
            }
        }),
    )
    .await;
    let bad = create_class(
        &env,
        "aws-bad",
        serde_json::json!({
            "provider": "aws",
            "credentialsSecretRef": {"namespace": env.ns, "name": "team-aws"},
            "aws": {"regionSettings": {"us-east-1": {"amiId": "ami-0123456789abcdef0", "subnetId": "subnet-00000000"}}}
        }),
    )
    .await;
    let ready = ready_of(&env, &good).await;
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", "Verified"),
        "{ready:?}"
    );
    let not_ready = ready_of(&env, &bad).await;
    assert_eq!(
        (not_ready.status.as_str(), not_ready.reason.as_str()),
        ("False", "InvalidSettings"),
        "{not_ready:?}"
    );
    assert!(
        not_ready
            .message
            .contains("AMI ami-0123456789abcdef0 not found in us-east-1")
            && not_ready
                .message
                .contains("subnet subnet-00000000 not found in us-east-1"),
        "{}",
        not_ready.message
    );

    let op = env
        .start_training_job_controller(test_controller_config("classes"), test_job_config())
        .await;
    let api: Api<CloudResource> = env.api();
    let jobs: Api<TrainingJob> = env.api();
    // A job on the class; the class's region is the default (the job names none).
    let vision: TrainingJob = object(serde_json::json!({
        "apiVersion": "runctl.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "vision"},
        "spec": {
            "placement": {"provider": "aws", "instanceType": "g5.xlarge", "machineClasses": [good]},
            "workload": {"image": "pytorch/pytorch:2.5", "command": ["python", "train.py"]}
        }
    }));
    jobs.create(&PostParams::default(), &vision)
        .await
        .expect("create the job");
    let on_bad: CloudResource = object(serde_json::json!({
        "apiVersion": "runctl.dev/v1alpha1", "kind": "CloudResource", "metadata": {"name": "bad"},
        "spec": {"provider": "aws", "instanceType": "g5.xlarge", "machineClass": bad}
    }));
    api.create(&PostParams::default(), &on_bad)
        .await
        .expect("create");
    let id = eventually(60, "the job's machine to run", || async {
        let s = api.get("vision-a1").await.ok()?.status?;
        (s.state == Some(ResourceState::Running)).then_some(s.provider_id?)
    })
    .await;
    let out = ec2
        .describe_instances()
        .instance_ids(&id)
        .send()
        .await
        .expect("describe");
    let instance = out.reservations()[0].instances()[0].clone();
    assert_eq!(instance.image_id(), Some(ami.as_str()));
    assert_eq!(instance.subnet_id(), Some(subnet.as_str()));
    assert_eq!(
        instance.iam_instance_profile().and_then(|p| p.arn()),
        Some("arn:aws:iam::123456789012:instance-profile/vision-training"),
        "the class's instance profile"
    );
    assert!(
        instance
            .security_groups()
            .iter()
            .any(|g| g.group_id() == Some(group.as_str())),
        "{:?}",
        instance.security_groups()
    );
    assert!(
        instance
            .tags()
            .iter()
            .any(|t| t.key() == Some("team") && t.value() == Some("vision")),
        "the class's tags: {:?}",
        instance.tags()
    );
    let volume = instance.block_device_mappings()[0]
        .ebs()
        .and_then(|e| e.volume_id())
        .expect("root volume")
        .to_string();
    let volumes = ec2
        .describe_volumes()
        .volume_ids(&volume)
        .send()
        .await
        .expect("volumes");
    assert_eq!(
        volumes.volumes()[0].size(),
        Some(321),
        "the class's root volume size"
    );

    // The class whose AMI does not exist: nothing is launched, the object says why.
    let blocked = eventually(30, "the object on the bad class to be refused", || async {
        let s = api.get("bad").await.ok()?.status?;
        (s.failure.as_ref()?.reason == "MachineClassNotReady").then_some(s)
    })
    .await;
    assert!(
        blocked.provider_id.is_none() && blocked.pending_create.is_none(),
        "{blocked:?}"
    );
    let synced = condition::get(&blocked.conditions, condition::SYNCED).expect("Synced");
    assert_eq!(
        (synced.status.as_str(), synced.reason.as_str()),
        ("False", "MachineClassNotReady")
    );
    assert!(
        synced.message.contains("ami-0123456789abcdef0"),
        "{}",
        synced.message
    );

    jobs.delete("vision", &DeleteParams::default())
        .await
        .expect("delete the job");
    api.delete("bad", &DeleteParams::default())
        .await
        .expect("delete");
    eventually(60, "every object gone", || async {
        let left = api.list(&Default::default()).await.ok()?.items.len();
        (left == 0).then_some(())
    })
    .await;
    op.stop().await;
    checker.stop().await;
    delete_class(&env, &good).await;
    delete_class(&env, &bad).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_team_pays_with_its_class_credentials_and_other_namespaces_are_refused() {
    use runctl_standins::runpod::RunPodStandin;

    let standin = RunPodStandin::start().await;
    let mut providers = ProvidersConfig::default();
    providers.runpod.base_url = standin.url();
    providers.runpod.list_cache_millis = 100;
    let mut env = TestEnv::start_with(providers).await;
    // The operator's default account is not the team's: a job that used it would fail.
    env.default_credentials(
        ProviderKind::Runpod,
        "platform-runpod",
        &[("apiKey", "not-this-account")],
    )
    .await;
    env.secret("team-runpod", &[("apiKey", &standin.api_key())])
        .await;
    let team = create_class(
        &env,
        "team",
        serde_json::json!({
            "provider": "runpod",
            "credentialsSecretRef": {"namespace": env.ns, "name": "team-runpod"},
            "allowedNamespaces": [env.ns],
            "runpod": {"containerDiskGb": 77, "volumeGb": 20}
        }),
    )
    .await;
    let other = create_class(
        &env,
        "other",
        serde_json::json!({"provider": "runpod", "allowedNamespaces": ["someone-else"]}),
    )
    .await;
    let op = env
        .start_training_job_controller(test_controller_config("team"), test_job_config())
        .await;
    let jobs: Api<TrainingJob> = env.api();
    for (name, class) in [("team-job", &team), ("stranger", &other)] {
        let job: TrainingJob = object(serde_json::json!({
            "apiVersion": "runctl.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": name},
            "spec": {
                "placement": {"provider": "runpod", "gpuType": "NVIDIA H100 80GB HBM3", "machineClasses": [class]},
                "workload": {"image": "pytorch/pytorch:2.5", "command": ["python", "train.py"]}
            }
        }));
        jobs.create(&PostParams::default(), &job)
            .await
            .expect("create job");
    }
    let pod = eventually(60, "the team's pod", || async {
        standin.pods().into_iter().find(|p| {
            p.env.get("RUNCTL_JOB_NAME").map(String::as_str) == Some("team-job") && p.is_live()
        })
    })
    .await;
    assert_eq!(pod.disk, Some(77), "the class's container disk");
    assert_eq!(
        pod.mounts,
        serde_json::json!({"persistent": {"size": 20, "path": "/workspace"}}),
        "the class's volume"
    );
    let crs: Api<CloudResource> = env.api();
    let cr = crs
        .get("team-job-a1")
        .await
        .expect("the attempt's CloudResource");
    assert_eq!(cr.spec.machine_class.as_deref(), Some(team.as_str()));
    let intent = cr
        .status
        .and_then(|s| s.pending_create)
        .expect("create intent");
    assert_eq!(
        intent.credentials,
        Some(format!("{}/team-runpod", env.ns)),
        "the machine was created with the class's account"
    );

    let refused = eventually(60, "the stranger to be refused", || async {
        let s = jobs.get("stranger").await.ok()?.status?;
        (s.reason.as_deref() == Some("MachineClassNotAllowed")).then_some(s)
    })
    .await;
    assert_eq!(refused.phase, Some(JobPhase::Pending));
    assert!(
        refused
            .message
            .unwrap_or_default()
            .contains("may not be used in namespace"),
    );
    assert!(refused.attempts.is_empty());
    assert!(
        crs.get_opt("stranger-a1").await.expect("get").is_none(),
        "no machine for it"
    );

    for name in ["team-job", "stranger"] {
        jobs.delete(name, &DeleteParams::default())
            .await
            .expect("delete");
    }
    eventually(60, "the team's pod terminated", || async {
        standin.pod(&pod.id).is_none().then_some(())
    })
    .await;
    op.stop().await;
    delete_class(&env, &team).await;
    delete_class(&env, &other).await;
}
