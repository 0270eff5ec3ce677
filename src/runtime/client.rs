//! The operator's Kubernetes client: the usual configuration (in-cluster service account,
//! `KUBECONFIG`, `~/.kube/config`) plus runctl's `User-Agent`, so the API server's audit log
//! and metrics (and the field manager it derives for writes without one) name runctl.

use axum::http::{HeaderValue, header};
use kube::{Client, Config};

use crate::USER_AGENT;

/// `config` with runctl's `User-Agent` on every request (any other one replaced).
pub fn with_user_agent(mut config: Config) -> Config {
    config
        .headers
        .retain(|(name, _)| name != header::USER_AGENT);
    config
        .headers
        .push((header::USER_AGENT, HeaderValue::from_static(USER_AGENT)));
    config
}

/// A client for `config` that sends runctl's `User-Agent`.
pub fn client(config: Config) -> Result<Client, kube::Error> {
    Client::try_from(with_user_agent(config))
}

/// The client `runctl run` uses: the inferred configuration with runctl's `User-Agent`.
pub async fn infer() -> Result<Client, String> {
    let config = Config::infer().await.map_err(|e| {
        format!("cannot build a Kubernetes client (kubeconfig or in-cluster config): {e}")
    })?;
    client(config).map_err(|e| format!("cannot build a Kubernetes client: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_agent_is_runctl_and_its_version() {
        assert_eq!(USER_AGENT, concat!("runctl/", env!("CARGO_PKG_VERSION")));
        let mut config = Config::new("http://127.0.0.1:1".parse().unwrap());
        config
            .headers
            .push((header::USER_AGENT, HeaderValue::from_static("other/1")));
        let config = with_user_agent(config);
        let agents: Vec<&HeaderValue> = config
            .headers
            .iter()
            .filter(|(n, _)| n == header::USER_AGENT)
            .map(|(_, v)| v)
            .collect();
        assert_eq!(agents, vec![&HeaderValue::from_static(USER_AGENT)]);
    }
}
