//! Fault injection for tests: fail the next writes with 409 Conflict or 500, expire every open
//! watch (an ERROR 410 event, then the stream closes), or delay every request. Off by default.

use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::stats::Verb;

/// How an injected write failure answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// 409 with reason `Conflict`, as for a stale resourceVersion.
    Conflict,
    /// 500 with reason `InternalError`.
    ServerError,
}

/// A rule failing the next `count` matching writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteFault {
    kind: FaultKind,
    remaining: u32,
    resource: Option<String>,
    verb: Option<Verb>,
}

impl WriteFault {
    /// Fail the next `count` writes with 409 Conflict.
    pub fn conflict(count: u32) -> Self {
        WriteFault {
            kind: FaultKind::Conflict,
            remaining: count,
            resource: None,
            verb: None,
        }
    }

    /// Fail the next `count` writes with 500.
    pub fn server_error(count: u32) -> Self {
        WriteFault {
            kind: FaultKind::ServerError,
            remaining: count,
            resource: None,
            verb: None,
        }
    }

    /// Only writes to this resource: a plural (`cloudresources`) or `plural.group`.
    pub fn on_resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }

    /// Only writes with this verb (create, update, patch or delete).
    pub fn on_verb(mut self, verb: Verb) -> Self {
        self.verb = Some(verb);
        self
    }

    fn matches(&self, verb: Verb, plural: &str, group_resource: &str) -> bool {
        self.verb.is_none_or(|v| v == verb)
            && self
                .resource
                .as_deref()
                .is_none_or(|r| r == plural || r == group_resource)
    }
}

/// The server's fault switches.
#[derive(Debug)]
pub struct Faults {
    writes: Mutex<Vec<WriteFault>>,
    latency: Mutex<Duration>,
    expire: watch::Sender<u64>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            writes: Mutex::new(Vec::new()),
            latency: Mutex::new(Duration::ZERO),
            expire: watch::channel(0).0,
        }
    }
}

impl Faults {
    /// Add a write failure rule; rules are consumed in the order added.
    pub fn fail_writes(&self, fault: WriteFault) {
        self.writes.lock().push(fault);
    }

    /// Expire every open watch: each gets an ERROR event with a 410 Expired status and ends.
    pub fn expire_watches(&self) {
        self.expire.send_modify(|n| *n += 1);
    }

    /// Delay every request by `latency` (zero turns it off).
    pub fn set_latency(&self, latency: Duration) {
        *self.latency.lock() = latency;
    }

    /// Turn every fault off.
    pub fn clear(&self) {
        self.writes.lock().clear();
        *self.latency.lock() = Duration::ZERO;
    }

    /// Write failure rules not yet used up.
    pub fn pending_write_faults(&self) -> u32 {
        self.writes.lock().iter().map(|f| f.remaining).sum()
    }

    pub(crate) fn latency(&self) -> Duration {
        *self.latency.lock()
    }

    pub(crate) fn expiry(&self) -> watch::Receiver<u64> {
        self.expire.subscribe()
    }

    /// Consume one matching write failure, if any.
    pub(crate) fn take_write_fault(
        &self,
        verb: Verb,
        plural: &str,
        group_resource: &str,
    ) -> Option<FaultKind> {
        let mut writes = self.writes.lock();
        let index = writes
            .iter()
            .position(|f| f.remaining > 0 && f.matches(verb, plural, group_resource))?;
        let fault = &mut writes[index];
        fault.remaining -= 1;
        let kind = fault.kind;
        if fault.remaining == 0 {
            writes.remove(index);
        }
        Some(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_faults_are_consumed_and_filtered() {
        let faults = Faults::default();
        faults.fail_writes(
            WriteFault::conflict(2)
                .on_resource("cloudresources")
                .on_verb(Verb::Patch),
        );
        faults.fail_writes(WriteFault::server_error(1));
        assert_eq!(
            faults.take_write_fault(Verb::Create, "configmaps", "configmaps"),
            Some(FaultKind::ServerError)
        );
        assert_eq!(
            faults.take_write_fault(Verb::Create, "configmaps", "configmaps"),
            None
        );
        let cr = "cloudresources.runctl.dev";
        assert_eq!(
            faults.take_write_fault(Verb::Update, "cloudresources", cr),
            None
        );
        assert_eq!(
            faults.take_write_fault(Verb::Patch, "cloudresources", cr),
            Some(FaultKind::Conflict)
        );
        assert_eq!(faults.pending_write_faults(), 1);
        assert_eq!(
            faults.take_write_fault(Verb::Patch, "cloudresources", cr),
            Some(FaultKind::Conflict)
        );
        assert_eq!(faults.pending_write_faults(), 0);
    }
}
