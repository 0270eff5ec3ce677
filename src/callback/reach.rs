//! Whether cloud machines can reach the callback endpoint at the configured URL: judged once
//! from the URL and the listener's settings, before any machine is rented for a job. A machine
//! that cannot report is trained blind (no heartbeats, no exit code) and, on AWS and RunPod,
//! ends `MachineLost` however the run went, so runctl refuses such placements with a clear
//! condition instead.
//!
//! Refused: no URL; a host only the cluster resolves or routes (`*.svc`, `*.cluster.local`, a
//! name without a dot, `localhost`, loopback and link-local addresses); a URL that names the
//! listener's own port with the other scheme (HTTPS to a plain-HTTP listener, or HTTP to a TLS
//! one). Private addresses (10/8, 172.16/12, 192.168/16) are allowed: machines in a peered VPC
//! reach them. `allow_internal` lifts the host check for machines that share the cluster's
//! network (and for tests whose stand-in machines run on the same host).

use std::net::IpAddr;

/// What the judgement needs besides the URL.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReachCheck {
    /// Port of the callback listener.
    pub listener_port: u16,
    /// The listener serves TLS itself.
    pub listener_tls: bool,
    /// Machines share the cluster's network: cluster-internal hosts are fine.
    pub allow_internal: bool,
}

/// Why machines cannot reach the callback endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unreachable {
    /// `jobs.callbackUrl` is not set.
    Missing,
    /// The URL does not parse as an `http(s)://host[:port]` URL.
    Invalid(String),
    /// The host is cluster-internal.
    Internal {
        /// The host.
        host: String,
    },
    /// The URL names the listener's port with the other scheme.
    SchemeMismatch {
        /// The URL's scheme.
        scheme: String,
        /// Whether the listener serves TLS.
        listener_tls: bool,
    },
}

impl Unreachable {
    /// Static reason for conditions and events.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Missing => "CallbackUrlMissing",
            Self::Invalid(_) | Self::Internal { .. } | Self::SchemeMismatch { .. } => {
                "CallbackUnreachable"
            }
        }
    }

    /// What the user reads, with what to do.
    pub fn message(&self) -> String {
        const FIX: &str = "set jobs.callbackUrl (Helm: callback.url, or ingress.enabled with \
                           ingress.host) to a URL cloud machines reach from outside the cluster";
        match self {
            Self::Missing => format!(
                "no callback URL is configured, so a cloud machine could not report its \
                 heartbeats and exit code; {FIX}"
            ),
            Self::Invalid(why) => format!("jobs.callbackUrl is not a usable URL ({why}); {FIX}"),
            Self::Internal { host } => format!(
                "jobs.callbackUrl names {host}, which only the cluster resolves or routes: a \
                 cloud machine cannot report to it; {FIX}"
            ),
            Self::SchemeMismatch {
                scheme,
                listener_tls,
            } => format!(
                "jobs.callbackUrl uses {scheme} on the callback listener's own port, but the \
                 listener speaks {}; {}",
                if *listener_tls { "HTTPS" } else { "plain HTTP" },
                if *listener_tls {
                    "use https://"
                } else {
                    "use https:// through an Ingress, or give the listener a certificate \
                     (jobs.callbackTls; Helm: callback.tls.secretName)"
                }
            ),
        }
    }
}

/// Judges `url` for machines outside the cluster.
pub fn judge(url: Option<&str>, check: ReachCheck) -> Result<(), Unreachable> {
    let Some(url) = url.map(str::trim).filter(|u| !u.is_empty()) else {
        return Err(Unreachable::Missing);
    };
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| Unreachable::Invalid("no scheme".into()))?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(Unreachable::Invalid(format!(
            "scheme {scheme}; expected http or https"
        )));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let (host, port) = split_host_port(authority)?;
    if host.is_empty() {
        return Err(Unreachable::Invalid("no host".into()));
    }
    if !check.allow_internal && is_internal(&host) {
        return Err(Unreachable::Internal { host });
    }
    if port == Some(check.listener_port) && (scheme == "https") != check.listener_tls {
        return Err(Unreachable::SchemeMismatch {
            scheme,
            listener_tls: check.listener_tls,
        });
    }
    Ok(())
}

fn split_host_port(authority: &str) -> Result<(String, Option<u16>), Unreachable> {
    let bad_port = |p: &str| Unreachable::Invalid(format!("port {p:?}"));
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| Unreachable::Invalid("unclosed [".into()))?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().map_err(|_| bad_port(p))?),
            None => None,
        };
        return Ok((host.to_ascii_lowercase(), port));
    }
    match authority.rsplit_once(':') {
        Some((host, p)) => Ok((
            host.to_ascii_lowercase(),
            Some(p.parse().map_err(|_| bad_port(p))?),
        )),
        None => Ok((authority.to_ascii_lowercase(), None)),
    }
}

fn is_internal(host: &str) -> bool {
    let host = host.trim_end_matches('.');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return match ip {
            IpAddr::V4(v4) => v4.is_loopback() || v4.is_link_local() || v4.is_unspecified(),
            IpAddr::V6(v6) => {
                v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xffc0) == 0xfe80
            }
        };
    }
    host == "localhost"
        || host.ends_with(".localhost")
        || host.ends_with(".svc")
        || host.ends_with(".cluster.local")
        || host.ends_with(".svc.cluster.local")
        || !host.contains('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: ReachCheck = ReachCheck {
        listener_port: 8443,
        listener_tls: false,
        allow_internal: false,
    };

    #[test]
    fn urls_machines_can_and_cannot_reach() {
        let tls = ReachCheck {
            listener_tls: true,
            ..PLAIN
        };
        type Case<'a> = (&'a str, Option<&'a str>, ReachCheck, Result<(), &'a str>);
        let cases: Vec<Case> = vec![
            ("an Ingress", Some("https://runctl.acme.dev"), PLAIN, Ok(())),
            (
                "an Ingress with a path",
                Some("https://acme.dev/runctl/"),
                PLAIN,
                Ok(()),
            ),
            (
                "a LoadBalancer to a TLS listener",
                Some("https://203.0.113.7:8443"),
                tls,
                Ok(()),
            ),
            (
                "a private address in a peered VPC",
                Some("https://10.0.3.4"),
                PLAIN,
                Ok(()),
            ),
            ("nothing configured", None, PLAIN, Err("CallbackUrlMissing")),
            ("empty", Some(" "), PLAIN, Err("CallbackUrlMissing")),
            (
                "the old default",
                Some("https://runctl.runctl-system.svc:8443"),
                PLAIN,
                Err("CallbackUnreachable"),
            ),
            (
                "cluster DNS",
                Some("https://runctl.runctl-system.svc.cluster.local"),
                PLAIN,
                Err("CallbackUnreachable"),
            ),
            (
                "a bare service name",
                Some("http://runctl:8443"),
                PLAIN,
                Err("CallbackUnreachable"),
            ),
            (
                "loopback",
                Some("http://127.0.0.1:9000"),
                PLAIN,
                Err("CallbackUnreachable"),
            ),
            (
                "IPv6 loopback",
                Some("http://[::1]:9000"),
                PLAIN,
                Err("CallbackUnreachable"),
            ),
            (
                "link-local",
                Some("http://169.254.169.254"),
                PLAIN,
                Err("CallbackUnreachable"),
            ),
            (
                "https to the plain listener's port",
                Some("https://203.0.113.7:8443"),
                PLAIN,
                Err("CallbackUnreachable"),
            ),
            (
                "http to the TLS listener's port",
                Some("http://203.0.113.7:8443"),
                tls,
                Err("CallbackUnreachable"),
            ),
            (
                "not a URL",
                Some("runctl.acme.dev"),
                PLAIN,
                Err("CallbackUnreachable"),
            ),
            (
                "another scheme",
                Some("ftp://acme.dev"),
                PLAIN,
                Err("CallbackUnreachable"),
            ),
            (
                "a bad port",
                Some("https://acme.dev:http"),
                PLAIN,
                Err("CallbackUnreachable"),
            ),
            (
                "loopback when machines share the host (tests)",
                Some("http://127.0.0.1:9000"),
                ReachCheck {
                    allow_internal: true,
                    ..PLAIN
                },
                Ok(()),
            ),
        ];
        for (what, url, check, want) in cases {
            let got = judge(url, check);
            assert_eq!(got.clone().map_err(|e| e.reason()), want, "{what}");
            if let Err(e) = got {
                assert!(
                    e.message().contains("jobs.callback"),
                    "{what}: {}",
                    e.message()
                );
            }
        }
    }
}
