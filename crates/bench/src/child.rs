//! A child process of the benchmark (the sim's, a shard's): started with piped stdin and
//! stdout, ready once it printed its first line, killed when dropped, and stopped by closing its
//! stdin (the children serve until it closes, so they also end with this process).

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// A running child and the line it printed when it was ready.
pub(crate) struct Piped {
    pub child: Child,
    stdin: Option<ChildStdin>,
    _stdout: BufReader<ChildStdout>,
}

impl Piped {
    /// Spawns `command` (stdin and stdout piped, stderr inherited) and waits up to `startup`
    /// for its first line; that line, or why there is none.
    pub async fn spawn(mut command: Command, startup: Duration) -> Result<(Self, String), String> {
        let mut child = command
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| e.to_string())?;
        let stdin = child.stdin.take();
        let Some(stdout) = child.stdout.take() else {
            return Err("no stdout pipe".into());
        };
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        match tokio::time::timeout(startup, stdout.read_line(&mut line)).await {
            Ok(Ok(n)) if n > 0 => Ok((
                Self {
                    child,
                    stdin,
                    _stdout: stdout,
                },
                line.trim().to_string(),
            )),
            Ok(Ok(_)) => Err("exited before it printed a line".into()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("printed nothing within {} s", startup.as_secs())),
        }
    }

    /// Closes its stdin and waits up to `grace` for it to end; kills it after that.
    pub async fn shutdown(mut self, grace: Duration) {
        drop(self.stdin.take());
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}
