//! Where the control plane's binaries are: `RUNCTL_CONTROL_PLANE_BIN`, else the build that
//! `scripts/setup-control-plane.sh` points `.tools/controlplane/current` at.

use std::path::{Path, PathBuf};

use crate::Error;

/// The environment variable that names a directory holding `etcd`, `kube-apiserver` and
/// `kube-controller-manager`.
pub const BIN_DIR_ENV: &str = "RUNCTL_CONTROL_PLANE_BIN";

/// The three binaries of a control plane.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub etcd: PathBuf,
    pub kube_apiserver: PathBuf,
    pub kube_controller_manager: PathBuf,
}

impl Binaries {
    /// The binaries in `dir`, each checked to exist.
    pub fn in_dir(dir: &Path) -> Result<Self, Error> {
        let found = |name: &str| {
            let path = dir.join(name);
            if path.is_file() {
                Ok(path)
            } else {
                Err(Error::BinaryMissing {
                    path,
                    hint: "run `bash scripts/setup-control-plane.sh` (the README's test command does)",
                })
            }
        };
        Ok(Self {
            etcd: found("etcd")?,
            kube_apiserver: found("kube-apiserver")?,
            kube_controller_manager: found("kube-controller-manager")?,
        })
    }

    /// `RUNCTL_CONTROL_PLANE_BIN` if set, else `.tools/controlplane/current` in the first
    /// ancestor of this crate's directory that has one (the workspace root).
    pub fn locate() -> Result<Self, Error> {
        if let Some(dir) = std::env::var_os(BIN_DIR_ENV) {
            return Self::in_dir(Path::new(&dir));
        }
        let start = Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = start
            .ancestors()
            .map(|a| a.join(".tools/controlplane/current"))
            .find(|d| d.is_dir())
            .unwrap_or_else(|| start.join("../../.tools/controlplane/current"));
        Self::in_dir(&dir)
    }
}
