//! The container image: the Dockerfile's user, ports, paths and command match what the Helm
//! chart runs (no Docker engine here, so the file is checked as text), and the `runctl` binary
//! answers `--help` and `crd` the way the image and the docs use it.

mod deploy_support;

use std::collections::BTreeSet;
use std::process::Command;

use deploy_support::*;
use serde_json::{Value, json};

/// Dockerfile instructions as (INSTRUCTION, arguments), continuation lines joined.
fn instructions() -> Vec<(String, String)> {
    let text = read("Dockerfile").replace("\\\n", " ");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (op, rest) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
            (op.to_uppercase(), rest.trim().to_string())
        })
        .collect()
}

/// Instructions of the final stage (after the last FROM).
fn final_stage() -> Vec<(String, String)> {
    let all = instructions();
    let last_from = all
        .iter()
        .rposition(|(op, _)| op == "FROM")
        .expect("a FROM");
    all[last_from..].to_vec()
}

fn arg_of<'a>(stage: &'a [(String, String)], op: &str) -> &'a str {
    stage
        .iter()
        .rev()
        .find(|(o, _)| o == op)
        .map(|(_, a)| a.as_str())
        .unwrap_or_else(|| panic!("final stage has {op}"))
}

fn values() -> Value {
    parse_file("charts/runctl/values.yaml")
}

#[test]
fn image_user_matches_the_charts_security_context() {
    let stage = final_stage();
    let user = arg_of(&stage, "USER");
    let (uid, gid) = user.split_once(':').unwrap_or((user, user));
    let v = values();
    assert_eq!(
        uid.parse::<i64>().ok(),
        v["podSecurityContext"]["runAsUser"].as_i64(),
        "USER uid"
    );
    assert_eq!(
        gid.parse::<i64>().ok(),
        v["podSecurityContext"]["runAsGroup"].as_i64(),
        "USER gid"
    );
    assert_ne!(uid, "0", "the image never runs as root");
    // A numeric uid lets the kubelet verify runAsNonRoot.
    assert!(uid.chars().all(|c| c.is_ascii_digit()));
    let base = arg_of(&stage, "FROM");
    assert!(
        base.contains("distroless/static") || base == "scratch",
        "small static base image: {base}"
    );
}

#[test]
fn image_ports_and_command_match_the_chart() {
    let stage = final_stage();
    let exposed: BTreeSet<i64> = arg_of(&stage, "EXPOSE")
        .split_whitespace()
        .map(|p| p.parse().expect("port"))
        .collect();
    let v = values();
    let chart: BTreeSet<i64> = [
        v["ports"]["metrics"].as_i64().expect("metrics"),
        v["ports"]["callback"].as_i64().expect("callback"),
    ]
    .into();
    assert_eq!(exposed, chart, "EXPOSE matches the chart's ports");

    let entrypoint: Vec<String> =
        serde_json::from_str(arg_of(&stage, "ENTRYPOINT")).expect("ENTRYPOINT in exec form");
    let cmd: Vec<String> = serde_json::from_str(arg_of(&stage, "CMD")).expect("CMD in exec form");
    let docs = helm_template(&["--set", CALLBACK_URL]);
    let container = operator_container(one(&docs, "Deployment"));
    assert!(
        container["command"].is_null(),
        "the chart keeps the image's ENTRYPOINT"
    );
    assert_eq!(json!(cmd), container["args"], "CMD equals the chart's args");
    // The binary the ENTRYPOINT runs is the one the builder stage installs.
    let copy = stage
        .iter()
        .find(|(op, a)| op == "COPY" && a.contains("--from="))
        .expect("COPY --from=builder");
    assert!(
        copy.1.ends_with(&entrypoint[0]),
        "COPY {} installs {}",
        copy.1,
        entrypoint[0]
    );
    // The chart mounts the config where CMD reads it.
    let config_dir = std::path::Path::new(&cmd[2])
        .parent()
        .expect("dir")
        .to_string_lossy()
        .to_string();
    assert!(
        container["volumeMounts"]
            .as_array()
            .expect("mounts")
            .iter()
            .any(|m| m["mountPath"] == config_dir.as_str())
    );
}

#[test]
fn build_context_has_what_the_dockerfile_copies() {
    let ignore = read(".dockerignore");
    let mut copied = vec![];
    for (op, args) in instructions() {
        if op != "COPY" || args.contains("--from=") {
            continue;
        }
        let parts: Vec<&str> = args
            .split_whitespace()
            .filter(|p| !p.starts_with("--"))
            .collect();
        for src in &parts[..parts.len() - 1] {
            copied.push(src.to_string());
        }
    }
    assert!(!copied.is_empty());
    for src in &copied {
        assert!(
            root().join(src).exists(),
            "the Dockerfile copies {src}, which the repository lacks"
        );
        let entry = format!("!{}", src.trim_end_matches('/'));
        assert!(
            ignore.lines().any(|l| l.trim_end_matches('/') == entry),
            ".dockerignore lets {src} into the context"
        );
    }
    for needed in ["Cargo.toml", "Cargo.lock", "src", "crates"] {
        assert!(
            copied.iter().any(|c| c == needed),
            "the Dockerfile copies {needed}"
        );
    }
    let build = instructions()
        .into_iter()
        .find(|(op, a)| op == "RUN" && a.contains("cargo build"))
        .expect("a cargo build");
    assert!(
        build.1.contains("--release")
            && build.1.contains("--locked")
            && build.1.contains("--bin runctl"),
        "{}",
        build.1
    );
}

fn runctl(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_runctl"))
        .args(args)
        .output()
        .expect("runctl runs")
}

#[test]
fn binary_help_and_crd_work() {
    let help = runctl(&["--help"]);
    assert!(help.status.success(), "runctl --help exits 0");
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("crd"), "--help lists crd:\n{text}");

    let crd = runctl(&["crd"]);
    assert!(crd.status.success(), "runctl crd exits 0");
    let printed = String::from_utf8(crd.stdout).expect("UTF-8");
    let expected: String = runctl::crd::all()
        .iter()
        .map(runctl::crd::to_yaml)
        .collect();
    assert_eq!(printed, expected, "runctl crd prints the CRDs of crds/");
}

#[test]
fn binary_help_lists_the_subcommands_the_image_runs() {
    let text = String::from_utf8(runctl(&["--help"]).stdout).expect("UTF-8");
    for sub in ["run", "crd", "demo"] {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(sub)),
            "--help lists {sub}:\n{text}"
        );
    }
    let run = runctl(&["run", "--help"]);
    assert!(run.status.success());
    assert!(
        String::from_utf8_lossy(&run.stdout).contains("--config"),
        "run takes --config, as the image's CMD does"
    );
}
