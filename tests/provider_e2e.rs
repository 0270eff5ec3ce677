//! CloudResource end to end with each real provider: the operator against the API test server,
//! the provider against its stand-in (RunPod, Lyceum) or moto behind the fault proxy (AWS).

mod support;

use std::time::Duration;

use kube::api::{Api, DeleteParams, PostParams};
use runctl::crd::cloud_resource::ResourceState;
use runctl::crd::{CloudResource, condition};
use runctl::provider::ProvidersConfig;
use support::{TestEnv, eventually, test_controller_config};

fn cr(value: serde_json::Value) -> CloudResource {
    serde_json::from_value(value).expect("valid CloudResource")
}

/// Applies `obj`, waits for Running with a price, deletes it and waits until it is gone; returns
/// the provider id.
async fn lifecycle(env: &TestEnv, obj: CloudResource) -> String {
    let name = obj.metadata.name.clone().unwrap();
    let op = env.start_controller(test_controller_config("e2e"));
    let api: Api<CloudResource> = Api::namespaced(env.client.clone(), &env.ns);
    api.create(&PostParams::default(), &obj)
        .await
        .expect("create");
    let running = eventually(60, &format!("{name} running"), || async {
        let cr = api.get_opt(&name).await.ok().flatten()?;
        let s = cr.status.clone()?;
        match s.state {
            Some(ResourceState::Running) => Some(cr),
            Some(ResourceState::Error) => panic!("{name} failed: {s:?}"),
            _ => None,
        }
    })
    .await;
    let s = running.status.clone().unwrap();
    assert!(
        s.cost_per_hour.unwrap_or(0.0) > 0.0,
        "cost per hour in status: {s:?}"
    );
    assert!(condition::is_true(&s.conditions, condition::READY));
    let id = s.provider_id.clone().expect("provider id");
    delete_and_wait(&api, &name).await;
    op.stop().await;
    id
}

/// Deletes CloudResource `name` and waits until it is gone (its machine released).
async fn delete_and_wait(api: &Api<CloudResource>, name: &str) {
    api.delete(name, &DeleteParams::default())
        .await
        .expect("delete");
    eventually(60, &format!("{name} deleted"), || async {
        api.get_opt(name)
            .await
            .ok()
            .flatten()
            .is_none()
            .then_some(())
    })
    .await;
}

/// A test environment whose Lyceum provider talks to `standin`, with the stand-in's API key as
/// the operator's default Lyceum credentials (what TrainingJobs use).
async fn lyceum_env(standin: &runctl_standins::lyceum::LyceumStandin) -> TestEnv {
    let mut providers = ProvidersConfig::default();
    providers.lyceum.base_url = standin.url();
    let mut env = TestEnv::start_with(providers).await;
    env.default_credentials(
        runctl::crd::ProviderKind::Lyceum,
        "lyceum",
        &[("apiKey", standin.api_key())],
    )
    .await;
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runpod_cloud_resource_end_to_end() {
    use runctl_standins::runpod::RunPodStandin;
    let standin = RunPodStandin::start().await;
    let mut providers = ProvidersConfig::default();
    providers.runpod.base_url = standin.url();
    providers.runpod.list_cache_millis = 100;
    let env = TestEnv::start_with(providers).await;
    env.secret("runpod", &[("apiKey", &standin.api_key())])
        .await;
    let id = lifecycle(
        &env,
        cr(serde_json::json!({
            "apiVersion": "runctl.dev/v1alpha1", "kind": "CloudResource", "metadata": {"name": "rp"},
            "spec": {"provider": "runpod", "gpuType": "NVIDIA H100 80GB HBM3", "gpuCount": 2,
                     "credentialsSecretRef": {"name": "runpod"},
                     "workload": {"image": "pytorch/pytorch:2.5", "command": ["python", "train.py"]}}
        })),
    )
    .await;
    assert!(standin.pod(&id).is_none(), "the pod is gone after delete");
    assert!(
        standin.pods().is_empty(),
        "no pod left: {:?}",
        standin.pods().len()
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lyceum_cloud_resource_end_to_end() {
    use runctl_standins::lyceum::LyceumStandin;
    let standin = LyceumStandin::start().await;
    standin.set_step(Duration::from_millis(100));
    standin.set_create_delay(Duration::from_millis(100));
    let mut providers = ProvidersConfig::default();
    providers.lyceum.base_url = standin.url();
    let env = TestEnv::start_with(providers).await;
    env.secret("lyceum", &[("apiKey", standin.api_key())]).await;
    let id = lifecycle(
        &env,
        cr(serde_json::json!({
            "apiVersion": "runctl.dev/v1alpha1", "kind": "CloudResource", "metadata": {"name": "ly"},
            "spec": {"provider": "lyceum", "gpuType": "a100", "gpuCount": 1,
                     "credentialsSecretRef": {"name": "lyceum"},
                     "workload": {"image": "pytorch/pytorch:2.5", "command": ["python", "train.py"],
                                  "env": [{"name": "EPOCHS", "value": "3"}]}}
        })),
    )
    .await;
    let runs = standin.runs();
    assert_eq!(runs.len(), 1, "exactly one run was started");
    assert!(id.ends_with(&runs[0].id), "{id} is the run {}", runs[0].id);
    assert!(
        !runs[0].is_live(),
        "the run was aborted on delete: {}",
        runs[0].status
    );
    assert!(runs[0].env.contains("EPOCHS=3"));
}

/// moto behind the EC2 proxy and the AWS Price List API stand-in, and an operator
/// configuration pointing the AWS provider at them.
struct AwsCloud {
    // Field order: the proxy stops before moto is killed.
    _proxy: runctl_standins::aws::Ec2Proxy,
    _moto: runctl_standins::aws::MotoServer,
    prices: runctl_standins::aws::PriceListStandin,
    direct: aws_sdk_ec2::Client,
}

async fn aws_cloud() -> (AwsCloud, ProvidersConfig) {
    use runctl_standins::aws::{Ec2Proxy, MotoServer, PriceListStandin};
    let moto = MotoServer::start().await.unwrap_or_else(|e| panic!("{e}"));
    let proxy = Ec2Proxy::start(&moto.url()).await.expect("start proxy");
    let prices = PriceListStandin::start().await.expect("start price list");
    let direct = support::moto::ec2_client(&moto.url());
    let ami = support::moto::first_ami(&direct).await;
    let mut providers = ProvidersConfig::default();
    providers.aws.endpoint_url = Some(proxy.url());
    providers.aws.pricing.endpoint_url = Some(prices.url());
    providers.aws.default_ami_id = Some(ami);
    providers.aws.max_attempts = 1;
    let cloud = AwsCloud {
        _proxy: proxy,
        _moto: moto,
        prices,
        direct,
    };
    (cloud, providers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_cloud_resource_end_to_end() {
    let (cloud, providers) = aws_cloud().await;
    cloud.prices.set_on_demand("us-east-1", "g5.xlarge", 1.006);
    let direct = &cloud.direct;
    let env = TestEnv::start_with(providers).await;
    env.secret(
        "aws",
        &[
            ("accessKeyId", "AKIATESTING"),
            ("secretAccessKey", "testing-secret"),
        ],
    )
    .await;
    let id = lifecycle(
        &env,
        cr(serde_json::json!({
            "apiVersion": "runctl.dev/v1alpha1", "kind": "CloudResource", "metadata": {"name": "ec2"},
            "spec": {"provider": "aws", "instanceType": "g5.xlarge", "region": "us-east-1",
                     "credentialsSecretRef": {"name": "aws"},
                     "workload": {"image": "pytorch/pytorch:2.5", "command": ["python", "train.py"]}}
        })),
    )
    .await;
    let out = direct
        .describe_instances()
        .instance_ids(&id)
        .send()
        .await
        .expect("describe");
    let states: Vec<String> = out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter_map(|i| {
            i.state()
                .and_then(|s| s.name())
                .map(|n| n.as_str().to_string())
        })
        .collect();
    assert_eq!(
        states,
        vec!["terminated".to_string()],
        "the instance is terminated after delete"
    );
    let all = direct
        .describe_instances()
        .send()
        .await
        .expect("describe all");
    assert_eq!(
        all.reservations()
            .iter()
            .map(|r| r.instances().len())
            .sum::<usize>(),
        1,
        "exactly one instance was launched"
    );
}

/// Issue 17 item 4: every AWS price in a CloudResource's status says where it comes from. On
/// demand: the AWS Price List API's price of the machine's region (two regions, two prices);
/// spot: EC2's spot price history; during a Price List outage: the embedded table, labelled
/// `ec2-on-demand-table` with a status message that the price is an estimate, and the create
/// goes ahead. One Price List call per instance type and region serves the create's quote, the
/// machine and every poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_prices_reach_status_with_where_they_come_from() {
    use runctl_standins::aws::PriceListFault;

    let (cloud, providers) = aws_cloud().await;
    cloud.prices.set_on_demand("us-east-1", "g5.xlarge", 1.006);
    cloud.prices.set_on_demand("eu-west-1", "g5.xlarge", 1.123);
    cloud.prices.set_on_demand("us-east-1", "g5.2xlarge", 1.3);
    let env = TestEnv::start_with(providers).await;
    env.secret(
        "aws",
        &[
            ("accessKeyId", "AKIATESTING"),
            ("secretAccessKey", "testing-secret"),
        ],
    )
    .await;
    let op = env.start_controller(test_controller_config("prices"));
    let api: Api<CloudResource> = env.api();
    let machine = |name: &str, region: &str, instance_type: &str, spot: bool| {
        cr(serde_json::json!({
            "apiVersion": "runctl.dev/v1alpha1", "kind": "CloudResource", "metadata": {"name": name},
            "spec": {"provider": "aws", "instanceType": instance_type, "region": region, "spot": spot,
                     "credentialsSecretRef": {"name": "aws"}}
        }))
    };
    let running = |name: &'static str| {
        let api = api.clone();
        async move {
            eventually(60, &format!("{name} running with a price"), || async {
                let s = api.get_opt(name).await.ok().flatten()?.status?;
                match s.state {
                    Some(ResourceState::Error) => panic!("{name} failed: {s:?}"),
                    Some(ResourceState::Running) if s.cost_per_hour.is_some() => Some(s),
                    _ => None,
                }
            })
            .await
        }
    };
    for (name, region, instance_type, spot) in [
        ("od-east", "us-east-1", "g5.xlarge", false),
        ("od-west", "eu-west-1", "g5.xlarge", false),
        ("spot-east", "us-east-1", "g5.xlarge", true),
    ] {
        api.create(
            &PostParams::default(),
            &machine(name, region, instance_type, spot),
        )
        .await
        .expect("create");
    }
    let east = running("od-east").await;
    assert_eq!(
        (east.cost_per_hour, east.price_source.as_deref()),
        (Some(1.006), Some("aws-price-list"))
    );
    let west = running("od-west").await;
    assert_eq!(
        (west.cost_per_hour, west.price_source.as_deref()),
        (Some(1.123), Some("aws-price-list"))
    );
    assert!(
        !west
            .message
            .clone()
            .unwrap_or_default()
            .contains("estimate"),
        "{west:?}"
    );
    let spot = running("spot-east").await;
    assert_eq!(
        spot.price_source.as_deref(),
        Some("ec2-spot-price-history"),
        "{spot:?}"
    );

    // The Price List API fails: the create goes ahead, priced from the table, labelled.
    cloud.prices.set_outage(Some(PriceListFault::InternalError));
    api.create(
        &PostParams::default(),
        &machine("od-outage", "us-east-1", "g5.2xlarge", false),
    )
    .await
    .expect("create");
    let outage = running("od-outage").await;
    assert_eq!(
        (outage.cost_per_hour, outage.price_source.as_deref()),
        (Some(1.212), Some("ec2-on-demand-table"))
    );
    let message = outage.message.clone().unwrap_or_default();
    assert!(
        message.contains("the price is an estimate"),
        "the status says so: {message}"
    );

    // A few polls later, still one call per instance type and region.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(cloud.prices.lookups("us-east-1", "g5.xlarge"), 1);
    assert_eq!(cloud.prices.lookups("eu-west-1", "g5.xlarge"), 1);
    assert_eq!(cloud.prices.lookups("us-east-1", "g5.2xlarge"), 1);
    for name in ["od-east", "od-west", "spot-east", "od-outage"] {
        delete_and_wait(&api, name).await;
    }
    op.stop().await;
}

/// Issue "Truthful outcomes", item 1: a Lyceum run that the provider reports finished, with no
/// report from the wrapper, ends its attempt by the provider's `return_code`: 0 succeeds after
/// one attempt (it used to end `MachineLost` and train again), 3 fails with `ExitCode`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lyceum_run_ends_the_job_by_the_return_code_the_provider_reports() {
    use runctl::crd::training_job::{JobPhase, TrainingJob};
    use runctl_standins::lyceum::LyceumStandin;
    use support::jobs::test_job_config;

    let standin = LyceumStandin::start().await;
    standin.set_step(Duration::from_millis(50));
    let env = lyceum_env(&standin).await;
    let mut config = test_job_config();
    // A machine that has not reported within this is flagged (the image cannot report).
    config.heartbeat_timeout = Some(Duration::from_secs(1));
    let op = env
        .start_training_job_controller(test_controller_config("lyceum"), config)
        .await;
    let jobs: Api<TrainingJob> = env.api();
    for (name, code) in [("finishes", 0), ("fails", 3)] {
        let job: TrainingJob = serde_json::from_value(serde_json::json!({
            "apiVersion": "runctl.dev/v1alpha1", "kind": "TrainingJob",
            "metadata": {"name": name},
            "spec": {
                "placement": {"provider": "lyceum", "gpuType": "a100"},
                "workload": {"image": "pytorch/pytorch:2.5", "command": ["python", "train.py"]}
            }
        }))
        .unwrap();
        jobs.create(&PostParams::default(), &job).await.unwrap();
        let run = eventually(60, &format!("{name}'s run to start"), || async {
            standin
                .runs()
                .into_iter()
                .find(|r| r.env.contains(&format!("RUNCTL_JOB_NAME={name}")))
        })
        .await;
        // The wrapper never reports (as with an image without curl, wget or python3): runctl
        // says so, and keeps the attempt for the provider to judge.
        let silent = eventually(
            60,
            &format!("{name}: Reporting=False NoReports"),
            || async {
                let s = jobs.get(name).await.ok()?.status?;
                let c = condition::get(&s.conditions, "Reporting")?;
                (c.status == "False" && c.reason == "NoReports").then_some(s)
            },
        )
        .await;
        assert_eq!(silent.phase, Some(JobPhase::Running), "not ended for it");
        // The run ends.
        assert!(standin.finish_run(&run.id, code));
        let status = eventually(60, &format!("{name} to end"), || async {
            let s = jobs.get(name).await.ok()?.status?;
            s.phase.filter(|p| p.is_terminal()).map(|_| s)
        })
        .await;
        let want = if code == 0 {
            (JobPhase::Succeeded, "Completed")
        } else {
            (JobPhase::Failed, "ExitCode")
        };
        assert_eq!(
            (status.phase, status.reason.as_deref()),
            (Some(want.0), Some(want.1)),
            "{status:?}"
        );
        assert_eq!(status.exit_code, Some(code as i32));
        assert_eq!(status.attempts.len(), 1, "trained once: {status:?}");
    }
    assert_eq!(standin.runs().len(), 2, "one run per job, none again");
    op.stop().await;
}

/// Issue "Truthful outcomes", item 7: a RunPod pod in `EXITED` (its container ended, its storage
/// still billed) ended nothing: the job stayed in Provisioning until its deadline. Now the
/// attempt ends (RunPod reports no exit code, so without a wrapper report it is `MachineLost`),
/// and its release terminates the pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exited_runpod_pod_ends_the_attempt_and_is_terminated() {
    use runctl::crd::training_job::{JobPhase, TrainingJob};
    use runctl_standins::runpod::RunPodStandin;
    use support::jobs::test_job_config;

    let standin = RunPodStandin::start().await;
    let mut providers = ProvidersConfig::default();
    providers.runpod.base_url = standin.url();
    providers.runpod.list_cache_millis = 100;
    let mut env = TestEnv::start_with(providers).await;
    env.default_credentials(
        runctl::crd::ProviderKind::Runpod,
        "runpod",
        &[("apiKey", &standin.api_key())],
    )
    .await;
    let op = env
        .start_training_job_controller(test_controller_config("runpod"), test_job_config())
        .await;
    let jobs: Api<TrainingJob> = env.api();
    let job: TrainingJob = serde_json::from_value(serde_json::json!({
        "apiVersion": "runctl.dev/v1alpha1", "kind": "TrainingJob",
        "metadata": {"name": "exits"},
        "spec": {
            "placement": {"provider": "runpod", "gpuType": "NVIDIA H100 80GB HBM3"},
            "workload": {"image": "pytorch/pytorch:2.5", "command": ["python", "train.py"]},
            "retryOn": ["capacity"]
        }
    }))
    .unwrap();
    jobs.create(&PostParams::default(), &job).await.unwrap();
    let pod = eventually(60, "the pod to run", || async {
        standin.pods().into_iter().find(|p| {
            p.env.get("RUNCTL_JOB_NAME").map(String::as_str) == Some("exits") && p.is_live()
        })
    })
    .await;
    eventually(60, "the job to run", || async {
        let s = jobs.get("exits").await.ok()?.status?;
        (s.phase == Some(JobPhase::Running)).then_some(())
    })
    .await;
    assert!(standin.exit_container(&pod.id, 0));
    let status = eventually(60, "the job to end", || async {
        let s = jobs.get("exits").await.ok()?.status?;
        s.phase.filter(|p| p.is_terminal()).map(|_| s)
    })
    .await;
    assert_eq!(
        (status.phase, status.attempts[0].reason.as_deref()),
        (Some(JobPhase::Failed), Some("MachineLost")),
        "{status:?}"
    );
    eventually(60, "the exited pod to be terminated", || async {
        standin.pod(&pod.id).is_none().then_some(())
    })
    .await;
    assert_eq!(standin.pods().len(), 0, "no pod left billing storage");
    op.stop().await;
}

/// Issue "Truthful outcomes", item 9: an account failure (`AuthenticationFailed`) used to wait
/// for a spec change that never comes. Now the typed failure in status (class `Account`, with
/// the credentials version it failed with) lets the retry policy create again once the
/// credentials Secret changes, with no spec change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_credentials_secret_leads_to_a_create_without_a_spec_change() {
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::{Patch, PatchParams};
    use runctl::controller::retry::AccountRetry;
    use runctl::crd::cloud_resource::FailureClass;
    use runctl_standins::runpod::RunPodStandin;

    let standin = RunPodStandin::start().await;
    let mut providers = ProvidersConfig::default();
    providers.runpod.base_url = standin.url();
    providers.runpod.list_cache_millis = 100;
    let env = TestEnv::start_with(providers).await;
    env.secret("runpod", &[("apiKey", "a-revoked-key")]).await;
    let mut config = test_controller_config("account");
    // Without a changed Secret, only an hour brings a retry: the test sees the Secret's effect.
    config.account_retry = AccountRetry {
        interval: Duration::from_secs(3600),
        recheck: Duration::from_millis(200),
    };
    let op = env.start_controller(config);
    let api: Api<CloudResource> = env.api();
    api.create(
        &PostParams::default(),
        &cr(serde_json::json!({
            "apiVersion": "runctl.dev/v1alpha1", "kind": "CloudResource", "metadata": {"name": "acct"},
            "spec": {"provider": "runpod", "gpuType": "NVIDIA H100 80GB HBM3",
                     "credentialsSecretRef": {"name": "runpod"},
                     "workload": {"image": "pytorch/pytorch:2.5", "command": ["python", "train.py"]}}
        })),
    )
    .await
    .expect("create");
    let failure = eventually(60, "the account failure in status", || async {
        api.get("acct").await.ok()?.status?.failure
    })
    .await;
    assert_eq!(
        (failure.class, failure.reason.as_str()),
        (FailureClass::Account, "AuthenticationFailed")
    );
    assert!(
        failure
            .credentials
            .as_deref()
            .is_some_and(|c| c.contains("/runpod@")),
        "the credentials version it failed with: {failure:?}"
    );
    assert!(standin.pods().is_empty());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        standin.pods().is_empty(),
        "no create while the Secret is the same"
    );

    let secrets: Api<Secret> = env.api();
    let fixed = Secret {
        data: Some(
            [(
                "apiKey".to_string(),
                k8s_openapi::ByteString(standin.api_key().into_bytes()),
            )]
            .into(),
        ),
        ..Default::default()
    };
    secrets
        .patch("runpod", &PatchParams::default(), &Patch::Merge(&fixed))
        .await
        .expect("fix the Secret");
    let running = eventually(60, "a machine after the Secret was fixed", || async {
        let cr = api.get("acct").await.ok()?;
        (cr.status.as_ref()?.state == Some(ResourceState::Running)).then_some(cr)
    })
    .await;
    let s = running.status.unwrap();
    assert_eq!(s.failure, None, "the success cleared the failure");
    assert_eq!(running.metadata.generation, Some(1), "no spec change");
    assert_eq!(standin.pods().len(), 1, "exactly one pod");
    delete_and_wait(&api, "acct").await;
    op.stop().await;
}

/// Issue "Truthful outcomes", item 2: the default callback URL (`https://runctl.runctl-system.svc`)
/// cannot be reached from a cloud machine, so every real job trained blind and ended
/// `MachineLost`. Now a cluster-internal callback URL keeps a cloud placement `Pending` with a
/// clear reason and a Warning event, and no machine is rented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_internal_callback_url_keeps_cloud_jobs_pending_with_a_clear_condition() {
    use runctl::crd::training_job::{JobPhase, TrainingJob};
    use runctl_standins::lyceum::LyceumStandin;
    use support::jobs::test_job_config;

    let standin = LyceumStandin::start().await;
    let env = lyceum_env(&standin).await;
    let mut config = test_job_config();
    // The test bed's callback endpoint listens on 127.0.0.1: not reachable from a cloud machine.
    config.callback_check.allow_internal = false;
    let op = env
        .start_training_job_controller(test_controller_config("reach"), config)
        .await;
    let jobs: Api<TrainingJob> = env.api();
    let job: TrainingJob = serde_json::from_value(serde_json::json!({
        "apiVersion": "runctl.dev/v1alpha1", "kind": "TrainingJob",
        "metadata": {"name": "blind"},
        "spec": {
            "placement": {"provider": "lyceum", "gpuType": "a100"},
            "workload": {"image": "pytorch/pytorch:2.5", "command": ["python", "train.py"]}
        }
    }))
    .unwrap();
    jobs.create(&PostParams::default(), &job).await.unwrap();
    let status = eventually(60, "the job to say why it waits", || async {
        let s = jobs.get("blind").await.ok()?.status?;
        (s.reason.as_deref() == Some("CallbackUnreachable")).then_some(s)
    })
    .await;
    assert_eq!(status.phase, Some(JobPhase::Pending));
    let message = status.message.clone().unwrap_or_default();
    assert!(
        message.contains("127.0.0.1") && message.contains("jobs.callbackUrl"),
        "{message}"
    );
    let ready = condition::get(&status.conditions, condition::READY).expect("Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "CallbackUnreachable")
    );
    let events: Api<k8s_openapi::api::events::v1::Event> = env.api();
    eventually(30, "a Warning event", || async {
        events
            .list(&Default::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|e| {
                e.reason.as_deref() == Some("CallbackUnreachable")
                    && e.type_.as_deref() == Some("Warning")
            })
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(standin.runs().is_empty(), "no machine was rented");
    let crs: Api<CloudResource> = env.api();
    assert!(
        crs.list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    op.stop().await;
}

/// Issue "Providers the way platform teams run them", item 5: a RunPod GPU id that does not
/// exist reached the create call, and the user saw RunPod's raw 400. Now the provider's catalog
/// refuses it before any create call, as `InvalidSpec` naming the known ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_gpu_id_is_refused_before_any_create_with_the_known_ids() {
    use runctl::crd::cloud_resource::FailureClass;
    use runctl_standins::runpod::{Op, RunPodStandin};

    let standin = RunPodStandin::start().await;
    let mut providers = ProvidersConfig::default();
    providers.runpod.base_url = standin.url();
    let env = TestEnv::start_with(providers).await;
    env.secret("runpod", &[("apiKey", &standin.api_key())])
        .await;
    let op = env.start_controller(test_controller_config("catalog"));
    let api: Api<CloudResource> = env.api();
    api.create(
        &PostParams::default(),
        &cr(serde_json::json!({
            "apiVersion": "runctl.dev/v1alpha1", "kind": "CloudResource", "metadata": {"name": "typo"},
            "spec": {"provider": "runpod", "gpuType": "NVIDIA H100 80GB HBM9",
                     "credentialsSecretRef": {"name": "runpod"},
                     "workload": {"image": "pytorch/pytorch:2.5", "command": ["python", "train.py"]}}
        })),
    )
    .await
    .expect("create");
    let s = eventually(60, "the refusal in status", || async {
        let s = api.get("typo").await.ok()?.status?;
        s.failure.is_some().then_some(s)
    })
    .await;
    let failure = s.failure.clone().unwrap();
    assert_eq!(
        (failure.class, failure.reason.as_str(), s.state),
        (
            FailureClass::Terminal,
            "InvalidSpec",
            Some(ResourceState::Error)
        )
    );
    let message = s.message.clone().unwrap_or_default();
    assert!(
        message.contains("NVIDIA H100 80GB HBM3"),
        "the known ids are listed: {message}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(standin.calls(Op::Create), 0, "no create call was made");
    delete_and_wait(&api, "typo").await;
    op.stop().await;
}
