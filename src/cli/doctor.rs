//! `runctl doctor`: whether runctl is installed and working, checked from where the user sits:
//! the API server answers; the CRDs are installed, established and at this binary's schema; the
//! operator runs and one replica leads (its Lease is fresh; in a sharded installation, each
//! shard's); the callback URL (each shard's) is one machines can use and answers from here;
//! each enabled provider accepts the operator's credentials; each MachineClass is Ready. Exit status 1 when a check fails.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::ListParams;

use super::output::{Table, Tone, duration};
use super::{CliError, Cluster, OperatorArgs, Out};
use crate::config::OperatorConfig;
use crate::controller::Context;
use crate::controller::cloud_resource::provider_instance;
use crate::crd::MachineClass;
use crate::metrics::Metrics;
use crate::provider::{MachineSpec, ProviderRegistry};

/// How long the callback URL may take to answer.
const CALLBACK_TIMEOUT: Duration = Duration::from_secs(5);

/// Flags of `doctor`.
#[derive(clap::Args, Debug, Clone)]
pub struct DoctorArgs {
    /// Where the operator's configuration is.
    #[command(flatten)]
    pub operator: OperatorArgs,
}

/// A check's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// Fine.
    Ok,
    /// Works, with a caveat.
    Warn,
    /// Broken.
    Fail,
}

/// One line of the report.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// The verdict.
    pub verdict: Verdict,
    /// What was found.
    pub detail: String,
}

impl Check {
    fn new(name: impl Into<String>, verdict: Verdict, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            verdict,
            detail: detail.into(),
        }
    }
}

/// Runs the checks and prints the report.
pub async fn run(cluster: &Cluster, args: &DoctorArgs, out: &mut Out) -> Result<(), CliError> {
    out.progress("checking the API server…");
    let mut checks = vec![api_server(cluster).await];
    if checks[0].verdict == Verdict::Fail {
        out.progress_done();
        return report(&checks, out);
    }
    out.progress("checking the CRDs…");
    checks.extend(crds(cluster).await);
    out.progress("reading the operator's configuration…");
    match args.operator.load(cluster).await {
        Err(e) => checks.push(Check::new("configuration", Verdict::Fail, e.to_string())),
        Ok(config) => {
            checks.push(Check::new(
                "configuration",
                Verdict::Ok,
                match &args.operator.config {
                    Some(path) => format!("read from {}", path.display()),
                    None => format!(
                        "read from ConfigMap {}/{}",
                        args.operator.operator_namespace, args.operator.config_map
                    ),
                },
            ));
            // A sharded installation: each shard's Lease and callback URL.
            for shard in shards_of(&config) {
                out.progress("checking the operator's leader Lease…");
                let ns = &args.operator.operator_namespace;
                checks.push(leader(cluster, ns, &shard, out.now).await);
                out.progress("checking the callback URL…");
                checks.push(callback(&shard).await);
            }
            out.progress("checking the providers' credentials…");
            checks.extend(providers(cluster, &config).await);
            checks.extend(classes(cluster).await);
        }
    }
    out.progress_done();
    report(&checks, out)
}

/// Prints the checks; fails when one failed.
pub fn report(checks: &[Check], out: &mut Out) -> Result<(), CliError> {
    out.line(&format!(
        "runctl doctor (runctl {})",
        env!("CARGO_PKG_VERSION")
    ))?;
    let mut t = Table::new(&["CHECK", "RESULT", "DETAIL"]);
    for c in checks {
        let (word, tone) = match c.verdict {
            Verdict::Ok => ("ok", Tone::Good),
            Verdict::Warn => ("warning", Tone::Wait),
            Verdict::Fail => ("FAILED", Tone::Bad),
        };
        t.toned_row(vec![
            (c.name.clone(), None),
            (word.to_string(), Some(tone)),
            (c.detail.clone(), None),
        ]);
    }
    out.table(&t)?;
    let failed = checks.iter().filter(|c| c.verdict == Verdict::Fail).count();
    if failed > 0 {
        return Err(CliError::ChecksFailed(failed));
    }
    Ok(())
}

async fn api_server(cluster: &Cluster) -> Check {
    match cluster.client.apiserver_version().await {
        Ok(v) => Check::new(
            "API server",
            Verdict::Ok,
            format!("Kubernetes {}", v.git_version),
        ),
        Err(e) => Check::new("API server", Verdict::Fail, format!("no answer: {e}")),
    }
}

/// Each CRD: installed, Established, and its versions as this binary defines them.
async fn crds(cluster: &Cluster) -> Vec<Check> {
    let api: Api<CustomResourceDefinition> = Api::all(cluster.client.clone());
    let mut checks = vec![];
    for want in crate::crd::all() {
        let name = want.metadata.name.clone().unwrap_or_default();
        let check = |verdict, detail: String| Check::new(format!("CRD {name}"), verdict, detail);
        let have = match api.get_opt(&name).await {
            Ok(Some(have)) => have,
            Ok(None) => {
                checks.push(check(
                    Verdict::Fail,
                    "not installed: kubectl apply -f crds/ (or install the Helm chart)".into(),
                ));
                continue;
            }
            Err(e) => {
                checks.push(check(Verdict::Fail, format!("cannot read it: {e}")));
                continue;
            }
        };
        let established = have
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            });
        checks.push(if !established {
            check(
                Verdict::Fail,
                "installed but not Established (the API server refused it? kubectl describe crd)"
                    .into(),
            )
        } else if same_versions(&have, &want) {
            check(Verdict::Ok, "established, at this binary's schema".into())
        } else {
            check(
                Verdict::Warn,
                format!(
                    "established, but its schema differs from runctl {}'s: apply this version's crds/ (or upgrade the chart)",
                    env!("CARGO_PKG_VERSION")
                ),
            )
        });
    }
    checks
}

/// Whether the installed CRD's versions (schemas, columns, subresources) are the binary's.
pub fn same_versions(have: &CustomResourceDefinition, want: &CustomResourceDefinition) -> bool {
    let json = |c: &CustomResourceDefinition| serde_json::to_value(&c.spec.versions).ok();
    json(have) == json(want)
}

/// The configuration as each shard runs it (its `sharding.index`): one for an unsharded
/// installation.
fn shards_of(config: &OperatorConfig) -> Vec<OperatorConfig> {
    (0..config.sharding.shards.max(1))
        .map(|index| {
            let mut shard = config.clone();
            shard.sharding.index = index;
            shard
        })
        .collect()
}

/// A check's name, with the shard's number in a sharded installation.
fn named(what: &str, config: &OperatorConfig) -> String {
    if config.sharding.shards > 1 {
        format!("{what} (shard {})", config.sharding.index)
    } else {
        what.to_string()
    }
}

/// The leader Lease (of the configuration's shard): held and renewed within its duration.
async fn leader(cluster: &Cluster, ns: &str, config: &OperatorConfig, now: Timestamp) -> Check {
    let check = |verdict, detail: String| Check::new(named("operator", config), verdict, detail);
    let le = &config.leader_election;
    if !le.enabled {
        return check(
            Verdict::Warn,
            "leader election is off in the configuration: doctor cannot tell whether the operator runs".into(),
        );
    }
    let lease_name = config.lease_config("doctor").name;
    let api: Api<Lease> = Api::namespaced(cluster.client.clone(), ns);
    let lease = match api.get_opt(&lease_name).await {
        Ok(Some(l)) => l,
        Ok(None) => {
            return check(
                Verdict::Fail,
                format!("not running: no Lease {ns}/{lease_name} (no replica ever led)"),
            );
        }
        Err(e) => {
            return check(Verdict::Fail, format!("cannot read its Lease: {e}"));
        }
    };
    let spec = lease.spec.unwrap_or_default();
    let holder = spec.holder_identity.unwrap_or_default();
    let renewed = spec.renew_time.map(|t| t.0);
    let valid = spec
        .lease_duration_seconds
        .map_or(le.lease_duration_seconds as i64, i64::from);
    match renewed {
        Some(r) if !holder.is_empty() && now.duration_since(r).as_secs() <= valid => check(
            Verdict::Ok,
            format!(
                "running; {holder} leads (renewed {} ago)",
                duration(now.duration_since(r))
            ),
        ),
        Some(r) => check(
            Verdict::Fail,
            format!(
                "no replica leads: Lease {ns}/{lease_name} last renewed {} ago{}",
                duration(now.duration_since(r)),
                if holder.is_empty() {
                    String::new()
                } else {
                    format!(" by {holder}")
                }
            ),
        ),
        None => check(
            Verdict::Fail,
            format!("no replica leads: Lease {ns}/{lease_name} was never renewed"),
        ),
    }
}

/// The callback URL: usable by machines (judged as the controller judges it) and answering here.
async fn callback(config: &OperatorConfig) -> Check {
    let clouds = config
        .providers
        .enabled_kinds()
        .into_iter()
        .any(|k| k.reports_from_outside());
    let url = config.shard_callback_url();
    let url = url.as_deref();
    let check = config.training_job_config().callback_check;
    if let Err(why) = crate::callback::reach::judge(url, check) {
        return Check::new(
            named("callback URL", config),
            if clouds { Verdict::Fail } else { Verdict::Warn },
            format!(
                "{}{}",
                why.message(),
                if clouds {
                    ""
                } else {
                    " (only sim is enabled, which needs none)"
                }
            ),
        );
    }
    let Some(url) = url else {
        return Check::new(named("callback URL", config), Verdict::Ok, "not needed");
    };
    let probe = format!(
        "{}/callback/runctl-doctor/doctor/0/heartbeat",
        url.trim().trim_end_matches('/')
    );
    let client = match reqwest::Client::builder()
        .timeout(CALLBACK_TIMEOUT)
        .user_agent(crate::USER_AGENT)
        .build()
    {
        Ok(c) => c,
        Err(e) => return Check::new(named("callback URL", config), Verdict::Fail, e.to_string()),
    };
    match client
        .post(&probe)
        .json(&serde_json::json!({}))
        .send()
        .await
    {
        Ok(r) if r.status() == reqwest::StatusCode::UNAUTHORIZED => Check::new(
            named("callback URL", config),
            Verdict::Ok,
            format!("{url} answers from here (401 to a report without a token, as runctl does)"),
        ),
        Ok(r) => Check::new(
            named("callback URL", config),
            Verdict::Warn,
            format!(
                "{url} answers {} to a report without a token; runctl answers 401: is the Ingress routing /callback/ to runctl?",
                r.status()
            ),
        ),
        Err(e) => Check::new(
            named("callback URL", config),
            Verdict::Fail,
            format!("{url} does not answer from here: {}", error_chain(&e)),
        ),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

/// Each enabled provider: its default credentials accepted (a listing, or the provider's own
/// verification of its default region's settings).
async fn providers(cluster: &Cluster, config: &OperatorConfig) -> Vec<Check> {
    let registry = Arc::new(
        ProviderRegistry::new(config.installation_id.clone(), config.providers.clone())
            .with_client(cluster.client.clone()),
    );
    let mut settings = crate::operator::controller_config(config, "runctl-doctor");
    settings.machine_classes = false;
    let ctx = Context::new(
        cluster.client.clone(),
        registry.clone(),
        Arc::new(Metrics::new()),
        settings,
    );
    let mut checks = vec![];
    for kind in config.providers.enabled_kinds() {
        let name = format!("provider {kind}");
        let region = config.providers.default_region(kind);
        let secret = config
            .providers
            .default_credentials(kind)
            .map(|r| (r.namespace.clone(), r.name.clone()));
        let provider = match provider_instance(&ctx, kind, region.clone(), secret, true).await {
            Ok((_, p)) => p,
            Err(e) => {
                checks.push(Check::new(name, Verdict::Fail, e.to_string()));
                continue;
            }
        };
        let spec = MachineSpec {
            region: region.clone(),
            ..Default::default()
        };
        let at = region.map(|r| format!(" in {r}")).unwrap_or_default();
        checks.push(match provider.verify(&spec).await {
            Ok(missing) if missing.is_empty() => {
                Check::new(name, Verdict::Ok, format!("credentials accepted{at}"))
            }
            Ok(missing) => Check::new(
                name,
                Verdict::Warn,
                format!(
                    "credentials accepted{at}; not found: {}",
                    missing.join("; ")
                ),
            ),
            Err(e) => Check::new(name, Verdict::Fail, format!("{:?}: {e}", e.class())),
        });
    }
    checks
}

/// Each MachineClass's Ready condition (none when they cannot be listed).
async fn classes(cluster: &Cluster) -> Vec<Check> {
    let api: Api<MachineClass> = Api::all(cluster.client.clone());
    let Ok(list) = api.list(&ListParams::default()).await else {
        return vec![];
    };
    list.items
        .iter()
        .map(|c| {
            let name = format!("class {}", c.metadata.name.as_deref().unwrap_or("?"));
            let ready = c
                .status
                .as_ref()
                .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"));
            match ready {
                Some(r) if r.status == "True" => Check::new(name, Verdict::Ok, "Ready"),
                Some(r) => Check::new(
                    name,
                    Verdict::Warn,
                    format!("not Ready ({}): {}", r.reason, r.message),
                ),
                None => Check::new(name, Verdict::Warn, "not checked by the operator yet"),
            }
        })
        .collect()
}
