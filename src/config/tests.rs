//! Tests of configuration loading: defaults, precedence, parse and validation errors.

use std::collections::HashMap;
use std::io::Write;

use super::*;

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |k| map.get(k).cloned()
}

fn file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new()
        .suffix(".yaml")
        .tempfile()
        .expect("temp file");
    f.write_all(text.as_bytes()).expect("write");
    f
}

#[test]
fn defaults() {
    let c = OperatorConfig::load_with_env(None, &Overrides::default(), env(&[]))
        .expect("defaults are valid");
    assert_eq!(c, OperatorConfig::default());
    assert_eq!(c.installation_id, "default");
    assert_eq!(c.namespace, "runctl-system");
    assert_eq!(c.watch_namespace, None);
    assert_eq!(c.metrics_addr, "0.0.0.0:8080");
    assert_eq!(c.metrics_socket_addr().expect("valid").port(), 8080);
    assert_eq!(c.log.format, LogFormat::Text);
    assert_eq!(c.log.level, "info");
    assert_eq!(c.poll_interval(), Duration::from_secs(30));
    assert!(c.leader_election.enabled);
    assert_eq!(c.leader_election.lease_name, "runctl-leader");
    assert_eq!(
        (
            c.leader_election.lease_duration_seconds,
            c.leader_election.renew_interval_seconds
        ),
        (15, 5)
    );
    assert_eq!(
        (c.backoff_base(), c.backoff_max()),
        (Duration::from_secs(1), Duration::from_secs(300))
    );
    assert_eq!(c.reconcile_concurrency, 16);
}

#[test]
fn pod_namespace_sets_the_default_namespace() {
    let c = OperatorConfig::load_with_env(
        None,
        &Overrides::default(),
        env(&[("POD_NAMESPACE", "ops")]),
    )
    .expect("valid");
    assert_eq!(c.namespace, "ops");
    let lease = c.lease_config("pod-a");
    assert_eq!(
        (
            lease.namespace.as_str(),
            lease.name.as_str(),
            lease.identity.as_str()
        ),
        ("ops", "runctl-leader", "pod-a")
    );
    assert_eq!(lease.lease_duration, Duration::from_secs(15));
    assert_eq!(lease.renew_interval, Duration::from_secs(5));
    assert_eq!(lease.retry_interval, Duration::from_secs(2));
}

#[test]
fn precedence_flags_over_env_over_file_over_defaults() {
    let f = file(
        "installationId: from-file\npollIntervalSeconds: 10\nlog: {format: json, level: debug}\n\
         watchNamespace: file-ns\nreconcileConcurrency: 4\nleaderElection: {leaseName: custom}\n",
    );
    let vars = env(&[
        ("RUNCTL_INSTALLATION_ID", "from-env"),
        ("RUNCTL_POLL_INTERVAL_SECONDS", "20"),
        ("RUNCTL_LOG_LEVEL", "warn"),
        ("RUNCTL_METRICS_ADDR", "127.0.0.1:9100"),
        ("RUNCTL_LEADER_ELECTION", "false"),
    ]);
    let flags = Overrides {
        installation_id: Some("from-flag".into()),
        log_format: Some(LogFormat::Text),
        ..Overrides::default()
    };
    let c = OperatorConfig::load_with_env(Some(f.path()), &flags, vars).expect("valid");
    assert_eq!(c.installation_id, "from-flag", "flag beats env and file");
    assert_eq!(c.log.format, LogFormat::Text, "flag beats file");
    assert_eq!(c.poll_interval_seconds, 20, "env beats file");
    assert_eq!(c.log.level, "warn", "env beats file");
    assert_eq!(c.metrics_addr, "127.0.0.1:9100", "env beats default");
    assert!(!c.leader_election.enabled, "env beats default");
    assert_eq!(
        c.watch_namespace.as_deref(),
        Some("file-ns"),
        "file beats default"
    );
    assert_eq!(c.reconcile_concurrency, 4, "file beats default");
    assert_eq!(c.leader_election.lease_name, "custom");
    assert_eq!(
        c.leader_election.lease_duration_seconds, 15,
        "unset nested fields keep defaults"
    );
}

#[test]
fn empty_env_values_and_empty_files_change_nothing() {
    let f = file("# only a comment\n");
    let vars = env(&[
        ("RUNCTL_INSTALLATION_ID", ""),
        ("RUNCTL_WATCH_NAMESPACE", " "),
    ]);
    let c =
        OperatorConfig::load_with_env(Some(f.path()), &Overrides::default(), vars).expect("valid");
    assert_eq!(c, OperatorConfig::default());
}

#[test]
fn every_env_variable_is_read() {
    let vars = env(&[
        (ENV_INSTALLATION_ID, "prod"),
        (ENV_METRICS_ADDR, "[::1]:8081"),
        (ENV_LOG_FORMAT, "JSON"),
        (ENV_LOG_LEVEL, "runctl=debug"),
        (ENV_POLL_INTERVAL_SECONDS, "5"),
        (ENV_WATCH_NAMESPACE, "team-a"),
        (ENV_LEADER_ELECTION, "no"),
        (ENV_POD_NAMESPACE, "ops"),
    ]);
    let c = OperatorConfig::load_with_env(None, &Overrides::default(), vars).expect("valid");
    assert_eq!(c.installation_id, "prod");
    assert_eq!(
        c.metrics_socket_addr().expect("valid").to_string(),
        "[::1]:8081"
    );
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(c.log.level, "runctl=debug");
    assert_eq!(c.poll_interval_seconds, 5);
    assert_eq!(c.watch_namespace.as_deref(), Some("team-a"));
    assert!(!c.leader_election.enabled);
    assert_eq!(c.namespace, "ops");
}

#[test]
fn every_flag_is_applied() {
    let flags = Overrides {
        installation_id: Some("a".into()),
        namespace: Some("b".into()),
        watch_namespace: Some("c".into()),
        metrics_addr: Some("127.0.0.1:1".into()),
        log_format: Some(LogFormat::Json),
        log_level: Some("trace".into()),
        poll_interval_seconds: Some(7),
        leader_election: Some(false),
        reconcile_concurrency: Some(3),
        shard_index: Some(0),
    };
    let c = OperatorConfig::load_with_env(None, &flags, env(&[])).expect("valid");
    assert_eq!(
        (
            c.installation_id.as_str(),
            c.namespace.as_str(),
            c.watch_namespace.as_deref()
        ),
        ("a", "b", Some("c"))
    );
    assert_eq!(c.metrics_socket_addr().expect("valid").port(), 1);
    assert_eq!(
        (c.log.format, c.log.level.as_str()),
        (LogFormat::Json, "trace")
    );
    assert_eq!(
        (
            c.poll_interval_seconds,
            c.leader_election.enabled,
            c.reconcile_concurrency
        ),
        (7, false, 3)
    );
}

#[test]
fn parse_errors_name_the_file_and_field() {
    let cases = [
        ("pollIntervalSeconds: often\n", "pollIntervalSeconds"),
        (
            "leaderElection:\n  enabled: maybe\n",
            "leaderElection.enabled",
        ),
        ("log:\n  format: xml\n", "log.format"),
        ("pollIntervalSecond: 3\n", "pollIntervalSecond"),
        ("backoff: {baseSeconds: 1, maxSecs: 2}\n", "maxSecs"),
        ("installationId: [unclosed\n", "line"),
    ];
    for (text, field) in cases {
        let f = file(text);
        let err = OperatorConfig::load_with_env(Some(f.path()), &Overrides::default(), env(&[]))
            .expect_err(text);
        assert!(matches!(err, ConfigError::Parse { .. }), "{text}: {err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&f.path().display().to_string()), "{msg}");
        assert!(msg.contains(field), "{text}: {msg}");
    }
}

#[test]
fn missing_file_is_named() {
    let path = Path::new("/nonexistent/runctl.yaml");
    let err = OperatorConfig::load_with_env(Some(path), &Overrides::default(), env(&[]))
        .expect_err("missing");
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(
        err.to_string().contains("/nonexistent/runctl.yaml"),
        "{err}"
    );
}

#[test]
fn bad_env_values_name_the_variable() {
    for (var, value) in [
        (ENV_POLL_INTERVAL_SECONDS, "soon"),
        (ENV_LOG_FORMAT, "xml"),
        (ENV_LEADER_ELECTION, "perhaps"),
    ] {
        let err = OperatorConfig::load_with_env(None, &Overrides::default(), env(&[(var, value)]))
            .expect_err(var);
        let msg = err.to_string();
        assert!(matches!(err, ConfigError::Env { .. }), "{msg}");
        assert!(msg.contains(var) && msg.contains(value), "{msg}");
    }
}

#[test]
fn validation_table() {
    // (file text, field at fault)
    let cases = [
        ("pollIntervalSeconds: 0", "pollIntervalSeconds"),
        ("installationId: ''", "installationId"),
        ("installationId: 'has space'", "installationId"),
        ("installationId: -leading", "installationId"),
        ("namespace: Upper", "namespace"),
        ("metricsAddr: 'localhost:8080'", "metricsAddr"),
        ("metricsAddr: '0.0.0.0'", "metricsAddr"),
        ("watchNamespace: bad_ns", "watchNamespace"),
        ("log: {level: 'runctl=loud'}", "log.level"),
        (
            "leaderElection: {leaseName: 'Bad Name'}",
            "leaderElection.leaseName",
        ),
        (
            "leaderElection: {leaseDurationSeconds: 1}",
            "leaderElection.leaseDurationSeconds",
        ),
        (
            "leaderElection: {renewIntervalSeconds: 0}",
            "leaderElection.renewIntervalSeconds",
        ),
        (
            "leaderElection: {leaseDurationSeconds: 10, renewIntervalSeconds: 6}",
            "leaderElection.renewIntervalSeconds",
        ),
        (
            "leaderElection: {retryIntervalSeconds: 0}",
            "leaderElection.retryIntervalSeconds",
        ),
        ("backoff: {baseSeconds: 0}", "backoff.baseSeconds"),
        (
            "backoff: {baseSeconds: 10, maxSeconds: 5}",
            "backoff.maxSeconds",
        ),
        ("reconcileConcurrency: 0", "reconcileConcurrency"),
        ("costRefreshSeconds: 30", "costRefreshSeconds"),
        (
            "jobs: {callbackTls: {certFile: '', keyFile: /tls/tls.key}}",
            "jobs.callbackTls.certFile",
        ),
        (
            "jobs: {callbackTls: {certFile: /tls/tls.crt, keyFile: ''}}",
            "jobs.callbackTls.keyFile",
        ),
    ];
    for (text, field) in cases {
        let f = file(text);
        let err = OperatorConfig::load_with_env(Some(f.path()), &Overrides::default(), env(&[]))
            .expect_err(text);
        match &err {
            ConfigError::Invalid {
                field: got, origin, ..
            } => {
                assert_eq!(*got, field, "{text}");
                assert_eq!(origin, &Origin::File(f.path().to_owned()), "{text}");
            }
            other => panic!("{text}: expected Invalid, got {other:?}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains(field) && msg.contains(&f.path().display().to_string()),
            "{msg}"
        );
    }
}

#[test]
fn callback_tls_names_both_files() {
    assert_eq!(OperatorConfig::default().callback_tls_files(), None);
    let c = OperatorConfig::from_yaml(
        "jobs:\n  callbackTls:\n    certFile: /tls/tls.crt\n    keyFile: /tls/tls.key\n",
    )
    .expect("valid");
    assert_eq!(
        c.callback_tls_files(),
        Some(crate::callback::TlsFiles::new(
            "/tls/tls.crt",
            "/tls/tls.key"
        ))
    );
    // Both files are required, and nothing else is accepted.
    for text in [
        "jobs: {callbackTls: {certFile: /tls/tls.crt}}",
        "jobs: {callbackTls: {certFile: /a, keyFile: /b, caFile: /c}}",
    ] {
        let err = OperatorConfig::from_yaml(text).expect_err(text).to_string();
        assert!(err.contains("callbackTls"), "{text}: {err}");
    }
}

#[test]
fn validation_errors_name_where_the_value_came_from() {
    let err = OperatorConfig::load_with_env(
        None,
        &Overrides::default(),
        env(&[(ENV_POLL_INTERVAL_SECONDS, "0")]),
    )
    .expect_err("zero");
    assert!(
        matches!(
            &err,
            ConfigError::Invalid {
                origin: Origin::Env(ENV_POLL_INTERVAL_SECONDS),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains(ENV_POLL_INTERVAL_SECONDS), "{err}");

    let err = OperatorConfig::load_with_env(
        None,
        &Overrides::default(),
        env(&[(ENV_METRICS_ADDR, "localhost")]),
    )
    .expect_err("no port");
    assert!(
        matches!(
            &err,
            ConfigError::Invalid {
                field: "metricsAddr",
                origin: Origin::Env(ENV_METRICS_ADDR),
                ..
            }
        ),
        "{err:?}"
    );

    let flags = Overrides {
        reconcile_concurrency: Some(0),
        ..Overrides::default()
    };
    let err = OperatorConfig::load_with_env(None, &flags, env(&[])).expect_err("zero");
    assert!(
        matches!(
            &err,
            ConfigError::Invalid {
                field: "reconcileConcurrency",
                origin: Origin::Flag,
                ..
            }
        ),
        "{err:?}"
    );

    // A rule that involves a defaulted field still names the field at fault.
    let f = file("leaderElection: {leaseDurationSeconds: 4}");
    let err = OperatorConfig::load_with_env(Some(f.path()), &Overrides::default(), env(&[]))
        .expect_err("renew too long");
    assert!(
        matches!(
            &err,
            ConfigError::Invalid {
                field: "leaderElection.renewIntervalSeconds",
                origin: Origin::Default,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn example_file_is_valid_and_documented() {
    let example = include_str!("../../config/runctl.example.yaml");
    let c = OperatorConfig::from_yaml(example).expect("example parses");
    assert_eq!(c.installation_id, "default");
    assert_eq!(c.leader_election, LeaderElectionConfig::default());
    assert_eq!(c.backoff, BackoffConfig::default());
    assert_eq!(
        c.providers
            .runpod
            .credentials_secret
            .as_ref()
            .map(|s| s.name.as_str()),
        Some("runpod-credentials")
    );
    use crate::crd::ProviderKind;
    assert_eq!(
        c.providers.enabled_kinds(),
        [
            ProviderKind::Aws,
            ProviderKind::Runpod,
            ProviderKind::Lyceum
        ],
        "the example's clouds are enabled, the simulator is not"
    );

    // Every field of the configuration is documented.
    let doc = include_str!("../../docs/configuration.md");
    let serialized = serde_yaml::to_value(OperatorConfig::default()).expect("serializes");
    let mut missing = Vec::new();
    collect_paths(&serialized, "", &mut missing, doc);
    assert!(
        missing.is_empty(),
        "fields missing from docs/configuration.md: {missing:?}"
    );
    for var in [
        ENV_INSTALLATION_ID,
        ENV_METRICS_ADDR,
        ENV_LOG_FORMAT,
        ENV_LOG_LEVEL,
        ENV_POLL_INTERVAL_SECONDS,
        ENV_WATCH_NAMESPACE,
        ENV_LEADER_ELECTION,
        ENV_POD_NAMESPACE,
    ] {
        assert!(
            doc.contains(var),
            "{var} missing from docs/configuration.md"
        );
    }
}

#[test]
fn configured_clouds_are_enabled_and_the_simulator_only_explicitly() {
    use crate::crd::ProviderKind::{Aws, Lyceum, Runpod, Sim};
    let enabled = |yaml: &str| {
        OperatorConfig::from_yaml(yaml)
            .expect("valid")
            .providers
            .enabled_kinds()
    };
    // No configuration at all: nothing is enabled.
    assert!(
        OperatorConfig::default()
            .providers
            .enabled_kinds()
            .is_empty()
    );
    assert!(enabled("installationId: x\n").is_empty());
    // A cloud's section enables it; `enabled: false` keeps its settings but turns it off; a
    // `sim` section without `enabled: true` does not enable the simulator.
    assert_eq!(
        enabled(
            "providers:\n  aws: {defaultRegion: eu-west-1}\n  runpod: {enabled: false, listCacheMillis: 5}\n  sim: {region: sim-2}\n"
        ),
        [Aws]
    );
    assert_eq!(
        enabled("providers:\n  lyceum: {}\n  sim: {enabled: true}\n"),
        [Lyceum, Sim]
    );
    assert_eq!(enabled("providers: {runpod: {enabled: true}}\n"), [Runpod]);
    // The manifests' configurations: kustomize enables AWS only.
    assert_eq!(
        enabled(include_str!("../../config/manager/config.yaml")),
        [Aws]
    );
    // A bad value names the field.
    let err = OperatorConfig::from_yaml("providers: {sim: {enabled: maybe}}\n")
        .expect_err("not a boolean")
        .to_string();
    assert!(err.contains("providers.sim.enabled"), "{err}");
}

/// Collects the dotted paths of `value` (runctl's own sections; providers are documented by
/// their modules and listed by section only) that `doc` does not mention.
fn collect_paths(value: &serde_yaml::Value, prefix: &str, missing: &mut Vec<String>, doc: &str) {
    let Some(map) = value.as_mapping() else {
        return;
    };
    for (k, v) in map {
        let Some(key) = k.as_str() else { continue };
        let path = if prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{prefix}.{key}")
        };
        if !doc.contains(&format!("`{path}`")) {
            missing.push(path.clone());
        }
        if !path.starts_with("providers.") {
            collect_paths(v, &path, missing, doc);
        }
    }
}

#[test]
fn a_shard_takes_its_index_from_the_environment_and_fills_its_callback_url() {
    let yaml =
        "sharding:\n  shards: 3\njobs:\n  callbackUrl: https://runctl-{shard}.example.com/\n";
    let f = file(yaml);
    let c = OperatorConfig::load_with_env(
        Some(f.path()),
        &Overrides::default(),
        env(&[("RUNCTL_SHARD_INDEX", "2")]),
    )
    .expect("valid");
    assert_eq!(c.shard().to_string(), "2 of 3");
    assert_eq!(
        c.training_job_config().reporting.callback_base_url,
        "https://runctl-2.example.com"
    );
    assert_eq!(c.lease_config("pod").name, "runctl-leader-shard-2");
    let whole = OperatorConfig::default();
    assert_eq!(whole.lease_config("pod").name, "runctl-leader");
}

#[test]
fn sharding_errors_name_the_field_and_the_rule() {
    let cases = [
        (
            "sharding:\n  shards: 2\n  index: 2\n",
            "sharding.index",
            "below sharding.shards",
        ),
        (
            "sharding:\n  shards: 0\n",
            "sharding.shards",
            "from 1 to 64",
        ),
        (
            "sharding:\n  shards: 2\nwatchNamespace: ml\n",
            "sharding.shards",
            "watches one namespace",
        ),
        (
            "sharding:\n  shards: 2\njobs:\n  callbackUrl: https://runctl.example.com\n",
            "jobs.callbackUrl",
            "{shard}",
        ),
    ];
    for (yaml, field, says) in cases {
        let err = OperatorConfig::from_yaml(yaml).expect_err(yaml);
        let text = err.to_string();
        assert!(
            matches!(&err, ConfigError::Invalid { field: f, .. } if *f == field),
            "{yaml}: {text}"
        );
        assert!(text.contains(says), "{yaml}: {text}");
    }
    let err = OperatorConfig::load_with_env(
        None,
        &Overrides::default(),
        env(&[("RUNCTL_SHARD_INDEX", "one")]),
    )
    .expect_err("not a number");
    assert!(err.to_string().contains("RUNCTL_SHARD_INDEX"), "{err}");
}
