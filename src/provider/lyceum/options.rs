//! Lyceum's run and VM settings: the block of a CloudResource's (and a MachineClass's) spec named
//! `lyceum`, re-exported by [`crate::crd::cloud_resource`].

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which kind of Lyceum compute backs the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum LyceumMode {
    /// A container run (`/execution/image/start`): runs the workload, ends with it.
    Run,
    /// A bare VM (`/vms/create`): takes no start-up script, so only without a workload.
    Vm,
}

/// Lyceum options.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LyceumOptions {
    /// Run (default when a workload is given) or Vm (default without a workload).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<LyceumMode>,
    /// SSH public key installed on a VM (mode Vm).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16384))]
    pub user_public_key: Option<String>,
    /// Run timeout in seconds. Lyceum's default is 60 s, so runctl always sends one: the shorter
    /// of this value and `maxLifetimeSeconds`, else the operator's default
    /// (`providers.lyceum.defaultRunTimeoutSeconds`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 60, max = 31_536_000))]
    pub timeout_seconds: Option<u32>,
}

impl LyceumOptions {
    /// Fills what a machine's settings leave unset from its class's.
    pub fn fill_from_class(&mut self, class: &LyceumOptions) {
        use crate::provider::fill_unset as fill;
        fill(&mut self.mode, class.mode.as_ref());
        fill(&mut self.user_public_key, class.user_public_key.as_ref());
        fill(&mut self.timeout_seconds, class.timeout_seconds.as_ref());
    }
}
