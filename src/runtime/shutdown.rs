//! Shutdown: one [`CancellationToken`] cancelled on SIGTERM or Ctrl-C, which the HTTP server,
//! the leader elector and the controllers all watch.

use tokio_util::sync::CancellationToken;

use super::RuntimeError;

/// Cancels `token` on the first SIGTERM (Kubernetes stopping the pod) or SIGINT (Ctrl-C).
///
/// The handlers are installed before this returns, so a signal that arrives right after is not
/// lost; the returned task ends when a signal came or the token was cancelled otherwise.
pub fn cancel_on_signal(
    token: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, RuntimeError> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).map_err(|source| RuntimeError::Signal {
            signal: "SIGTERM",
            source,
        })?;
        let mut int = signal(SignalKind::interrupt()).map_err(|source| RuntimeError::Signal {
            signal: "SIGINT",
            source,
        })?;
        Ok(tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => tracing::info!(signal = "SIGTERM", "shutting down"),
                _ = int.recv() => tracing::info!(signal = "SIGINT", "shutting down"),
                () = token.cancelled() => return,
            }
            token.cancel();
        }))
    }
    #[cfg(not(unix))]
    {
        Ok(tokio::spawn(async move {
            tokio::select! {
                res = tokio::signal::ctrl_c() => {
                    if let Err(e) = res {
                        tracing::warn!(error = %e, "failed to listen for Ctrl-C; shutting down");
                    } else {
                        tracing::info!(signal = "Ctrl-C", "shutting down");
                    }
                }
                () = token.cancelled() => return,
            }
            token.cancel();
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn task_ends_when_the_token_is_cancelled_elsewhere() {
        let token = CancellationToken::new();
        let task = cancel_on_signal(token.clone()).expect("handlers install");
        token.cancel();
        tokio::time::timeout(std::time::Duration::from_secs(5), task)
            .await
            .expect("task ends")
            .expect("no panic");
    }
}
