//! An envtest for kube-rs: a real Kubernetes control plane for tests.
//!
//! [`ControlPlane::start`] runs etcd, kube-apiserver and (optionally) kube-controller-manager
//! from the binaries that `scripts/setup-control-plane.sh` builds from their Go modules, on free
//! loopback ports, with:
//! - a freshly generated CA, serving certificate and admin client certificate (`system:masters`);
//! - a ServiceAccount token signing key, so [`ControlPlane::service_account_client`] hands out a
//!   client that acts as any ServiceAccount (RBAC authorization is on: such a client gets 403
//!   for what its roles do not grant);
//! - kube-controller-manager with the garbage-collector, namespace and serviceaccount
//!   controllers, so ownerReferences and namespace deletion behave as in a cluster.
//!
//! [`shared`] starts one control plane per test binary; each test then works in a namespace of
//! its own ([`ControlPlane::create_namespace`]). Processes never outlive the test binary, even
//! when a test panics or the binary is killed (see [`process`]). [`ControlPlane::kubeconfig`]
//! is a kubeconfig file for kubectl and helm.
//!
//! A `kube::Client` belongs to the tokio runtime it was built on, and every `#[tokio::test]` has
//! its own runtime, so clients are built per call rather than shared.

pub mod binaries;
pub mod certs;
pub mod process;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

pub use binaries::{BIN_DIR_ENV, Binaries};
use certs::Pki;
use process::{Process, free_ports};

/// What went wrong starting or using the control plane.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path} is missing: {hint}")]
    BinaryMissing { path: PathBuf, hint: &'static str },
    #[error("could not {what} ({path})")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("could not generate the control plane's certificates")]
    Certificates(#[from] rcgen::Error),
    #[error("the process supervisor thread is gone")]
    Supervisor,
    #[error("{component} exited while starting ({status}); the end of its log:\n{log}")]
    Exited {
        component: &'static str,
        status: std::process::ExitStatus,
        log: String,
    },
    #[error("{component} was not ready after {secs} s; the end of its log:\n{log}")]
    NotReady {
        component: &'static str,
        secs: u64,
        log: String,
    },
    #[error("could not build a client from the control plane's kubeconfig")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    #[error("could not build a client")]
    Client(#[from] kube::Error),
}

/// One of the control plane's processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    Etcd,
    KubeApiserver,
    KubeControllerManager,
}

/// What to start.
#[derive(Debug, Clone)]
pub struct Options {
    /// Start kube-controller-manager (garbage collector, namespace and serviceaccount controllers).
    pub controller_manager: bool,
    /// The binaries; [`Binaries::locate`] when `None`.
    pub binaries: Option<Binaries>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            controller_manager: true,
            binaries: None,
        }
    }
}

/// How long each component may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// A running control plane. Dropping it stops every process and removes its state directory.
#[derive(Debug)]
pub struct ControlPlane {
    dir: PathBuf,
    etcd: Mutex<Process>,
    apiserver: Mutex<Process>,
    controller_manager: Option<Mutex<Process>>,
    etcd_port: u16,
    api: Endpoint,
    pki: Pki,
    kubeconfig: PathBuf,
}

impl ControlPlane {
    /// Starts etcd, kube-apiserver and (if asked) kube-controller-manager and waits until the
    /// API server answers `/readyz`.
    pub async fn start(options: Options) -> Result<Self, Error> {
        let binaries = match options.binaries {
            Some(b) => b,
            None => Binaries::locate()?,
        };
        let dir = state_dir()?;
        let pki = Pki::generate(&dir)?;
        let ports = free_ports(3)?;
        let (etcd_port, peer_port, api_port) = (ports[0], ports[1], ports[2]);

        let etcd = Process::start(
            "etcd",
            &binaries.etcd,
            etcd_args(&dir, etcd_port, peer_port),
            dir.join("etcd.log"),
        )?;
        let api = Endpoint::new(&pki, api_port);
        let kubeconfig = dir.join("admin.kubeconfig");
        std::fs::write(&kubeconfig, &api.admin_kubeconfig).map_err(|source| Error::Io {
            what: "write the admin kubeconfig",
            path: kubeconfig.clone(),
            source,
        })?;
        let apiserver = Process::start(
            "kube-apiserver",
            &binaries.kube_apiserver,
            apiserver_args(&dir, &pki, etcd_port, api_port),
            dir.join("kube-apiserver.log"),
        )?;
        let mut plane = Self {
            dir,
            etcd: Mutex::new(etcd),
            apiserver: Mutex::new(apiserver),
            controller_manager: None,
            etcd_port,
            api,
            pki,
            kubeconfig,
        };
        plane.wait_ready().await?;
        if options.controller_manager {
            let kcm = Process::start(
                "kube-controller-manager",
                &binaries.kube_controller_manager,
                controller_manager_args(&plane.kubeconfig, &plane.pki),
                plane.dir.join("kube-controller-manager.log"),
            )?;
            plane.controller_manager = Some(Mutex::new(kcm));
        }
        Ok(plane)
    }

    /// The API server's URL (`https://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        self.api.url()
    }

    /// etcd's client URL.
    pub fn etcd_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.etcd_port)
    }

    /// A kubeconfig file with the admin identity, for kubectl and helm (`--kubeconfig`).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The CA certificate (PEM) that signed the API server's serving certificate.
    pub fn ca_pem(&self) -> &str {
        &self.pki.ca_pem
    }

    /// The directory with the components' logs and state.
    pub fn state_dir(&self) -> &Path {
        &self.dir
    }

    /// A client with the admin identity (group `system:masters`), for the calling runtime.
    pub async fn client(&self) -> Result<Client, Error> {
        self.api.client().await
    }

    /// A client that acts as ServiceAccount `namespace/name` with a bound token from the
    /// TokenRequest API; creates the ServiceAccount if it does not exist.
    pub async fn service_account_client(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Client, Error> {
        self.api.service_account_client(namespace, name).await
    }

    /// Starts another kube-apiserver on this control plane's etcd, certificates and
    /// ServiceAccount keys (as in a highly available control plane), with `extra_args` added
    /// to the same flags: for what a test needs that the shared server leaves off, such as an
    /// admission plugin or an audit log. It leaves the `kubernetes` Service's endpoints to the
    /// first server, and is stopped when dropped (or with the test binary).
    pub async fn start_apiserver(&self, extra_args: &[String]) -> Result<ApiServer, Error> {
        let binaries = Binaries::locate()?;
        let dir = self
            .dir
            .join(format!("apiserver-{:08x}", rand::random::<u32>()));
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
            what: "create an API server's directory",
            path: dir.clone(),
            source,
        })?;
        let port = free_ports(1)?[0];
        let mut args = apiserver_args(&dir, &self.pki, self.etcd_port, port);
        args.push("--endpoint-reconciler-type=none".into());
        args.extend(extra_args.iter().cloned());
        let process = Process::start(
            "kube-apiserver",
            &binaries.kube_apiserver,
            args,
            dir.join("kube-apiserver.log"),
        )?;
        let server = ApiServer {
            api: Endpoint::new(&self.pki, port),
            dir,
            process: Mutex::new(process),
        };
        wait_ready(
            &server.client().await?,
            &[("kube-apiserver", &server.process)],
        )
        .await?;
        Ok(server)
    }

    /// Creates a namespace named `prefix-<random>` and returns its name.
    pub async fn create_namespace(&self, prefix: &str) -> Result<String, Error> {
        let name = format!("{prefix}-{:08x}", rand::random::<u32>());
        let namespaces: Api<Namespace> = Api::all(self.client().await?);
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        namespaces
            .create(&PostParams::default(), &namespace)
            .await?;
        Ok(name)
    }

    /// Kills one component and starts it again with the same ports and data (a crash and a
    /// restart); waits until the API server is ready again when the component is etcd or the
    /// API server.
    pub async fn restart(&self, component: Component) -> Result<(), Error> {
        self.process(component)
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .restart()?;
        if component != Component::KubeControllerManager {
            self.wait_ready().await?;
        }
        Ok(())
    }

    /// Kills one component and leaves it stopped until [`restart`](Self::restart).
    pub fn stop(&self, component: Component) {
        self.process(component)
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .kill();
    }

    fn process(&self, component: Component) -> &Mutex<Process> {
        match component {
            Component::Etcd => &self.etcd,
            Component::KubeApiserver => &self.apiserver,
            Component::KubeControllerManager => self
                .controller_manager
                .as_ref()
                .expect("this control plane was started without kube-controller-manager"),
        }
    }

    /// Waits until kube-apiserver answers `/readyz` with 200 (which includes its etcd check).
    pub async fn wait_ready(&self) -> Result<(), Error> {
        wait_ready(
            &self.client().await?,
            &[("etcd", &self.etcd), ("kube-apiserver", &self.apiserver)],
        )
        .await
    }
}

/// A further kube-apiserver of a control plane ([`ControlPlane::start_apiserver`]). Dropping it
/// stops it.
#[derive(Debug)]
pub struct ApiServer {
    api: Endpoint,
    dir: PathBuf,
    process: Mutex<Process>,
}

impl ApiServer {
    /// Its URL (`https://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        self.api.url()
    }

    /// Its directory: its log, and files a test puts beside it (an audit policy, the audit log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A client with the admin identity, through this server.
    pub async fn client(&self) -> Result<Client, Error> {
        self.api.client().await
    }

    /// A client acting as ServiceAccount `namespace/name` through this server (see
    /// [`ControlPlane::service_account_client`]).
    pub async fn service_account_client(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Client, Error> {
        self.api.service_account_client(namespace, name).await
    }
}

/// One kube-apiserver's address and the identities to reach it with.
#[derive(Debug)]
struct Endpoint {
    port: u16,
    pki: Pki,
    admin_kubeconfig: String,
}

impl Endpoint {
    fn new(pki: &Pki, port: u16) -> Self {
        Self {
            port,
            pki: pki.clone(),
            admin_kubeconfig: admin_kubeconfig(pki, port),
        }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    async fn client(&self) -> Result<Client, Error> {
        client_from_yaml(&self.admin_kubeconfig).await
    }

    async fn service_account_client(&self, namespace: &str, name: &str) -> Result<Client, Error> {
        let token = service_account_token(self.client().await?, namespace, name).await?;
        client_from_yaml(&token_kubeconfig(&self.pki, self.port, &token)).await
    }
}

/// Waits until the server behind `client` answers `/readyz` with 200; fails early, with the end
/// of its log, when one of `processes` exits.
async fn wait_ready(
    client: &Client,
    processes: &[(&'static str, &Mutex<Process>)],
) -> Result<(), Error> {
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    loop {
        for (component, process) in processes {
            let mut p = process.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(status) = p.exited() {
                return Err(Error::Exited {
                    component,
                    status,
                    log: p.log_tail(4000),
                });
            }
        }
        let request = http::Request::get("/readyz")
            .body(Vec::new())
            .expect("request");
        if let Ok(text) = client.request_text(request).await
            && text.trim() == "ok"
        {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            let (component, process) = processes.last().expect("a process to wait for");
            let p = process.lock().unwrap_or_else(|p| p.into_inner());
            return Err(Error::NotReady {
                component,
                secs: READY_TIMEOUT.as_secs(),
                log: p.log_tail(4000),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A bound token for ServiceAccount `namespace/name` from the TokenRequest API, asked by
/// `admin`; creates the ServiceAccount if it does not exist.
async fn service_account_token(
    admin: Client,
    namespace: &str,
    name: &str,
) -> Result<String, Error> {
    let accounts: Api<ServiceAccount> = Api::namespaced(admin, namespace);
    let account = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    match accounts.create(&PostParams::default(), &account).await {
        Ok(_) => {}
        Err(e) if is_already_exists(&e) => {}
        Err(e) => return Err(e.into()),
    }
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(24 * 3600),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = accounts
        .create_token_request(name, &PostParams::default(), &request)
        .await?;
    Ok(answer.status.map(|s| s.token).unwrap_or_default())
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if let Some(kcm) = &self.controller_manager {
            kcm.lock().unwrap_or_else(|p| p.into_inner()).kill();
        }
        self.apiserver
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .kill();
        self.etcd.lock().unwrap_or_else(|p| p.into_inner()).kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The control plane of this test binary, started by the first test that asks (with
/// kube-controller-manager). Panics with the reason if it cannot start: every test that needs it
/// would fail anyway, and the message says how to build the binaries.
pub async fn shared() -> &'static ControlPlane {
    static SHARED: tokio::sync::OnceCell<ControlPlane> = tokio::sync::OnceCell::const_new();
    SHARED
        .get_or_try_init(|| ControlPlane::start(Options::default()))
        .await
        .unwrap_or_else(|e| panic!("the test control plane did not start: {e}"))
}

fn is_already_exists(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.reason == "AlreadyExists")
}

async fn client_from_yaml(yaml: &str) -> Result<Client, Error> {
    let kubeconfig = Kubeconfig::from_yaml(yaml)?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

fn b64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn kubeconfig_yaml(pki: &Pki, api_port: u16, user: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: envtest\n  cluster:\n    server: https://127.0.0.1:{api_port}\n    certificate-authority-data: {ca}\nusers:\n- name: user\n  user:\n{user}contexts:\n- name: envtest\n  context:\n    cluster: envtest\n    user: user\ncurrent-context: envtest\n",
        ca = b64(&pki.ca_pem),
    )
}

fn admin_kubeconfig(pki: &Pki, api_port: u16) -> String {
    let user = format!(
        "    client-certificate-data: {}\n    client-key-data: {}\n",
        b64(&pki.admin_cert_pem),
        b64(&pki.admin_key_pem)
    );
    kubeconfig_yaml(pki, api_port, &user)
}

fn token_kubeconfig(pki: &Pki, api_port: u16, token: &str) -> String {
    kubeconfig_yaml(pki, api_port, &format!("    token: {token}\n"))
}

/// A fresh state directory `runctl-envtest-<pid>-<random>` in the system's temporary
/// directory; directories left by test binaries that no longer run are removed first.
fn state_dir() -> Result<PathBuf, Error> {
    let tmp = std::env::temp_dir();
    if let Ok(entries) = std::fs::read_dir(&tmp) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = name
                .strip_prefix("runctl-envtest-")
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse::<u32>().ok())
            else {
                continue;
            };
            if !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let dir = tmp.join(format!(
        "runctl-envtest-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(dir.join("etcd")).map_err(|source| Error::Io {
        what: "create the state directory",
        path: dir.clone(),
        source,
    })?;
    Ok(dir)
}

fn etcd_args(dir: &Path, client_port: u16, peer_port: u16) -> Vec<String> {
    let client = format!("http://127.0.0.1:{client_port}");
    let peer = format!("http://127.0.0.1:{peer_port}");
    vec![
        "--name=envtest".into(),
        format!("--data-dir={}", dir.join("etcd").display()),
        format!("--listen-client-urls={client}"),
        format!("--advertise-client-urls={client}"),
        format!("--listen-peer-urls={peer}"),
        format!("--initial-advertise-peer-urls={peer}"),
        format!("--initial-cluster=envtest={peer}"),
        // Test data: no fsync (much faster on small disks), quiet logs.
        "--unsafe-no-fsync=true".into(),
        "--log-level=warn".into(),
    ]
}

fn apiserver_args(dir: &Path, pki: &Pki, etcd_port: u16, api_port: u16) -> Vec<String> {
    let sa_key = pki.service_account_key.display();
    let sa_public_key = pki.service_account_public_key.display();
    vec![
        format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
        "--bind-address=127.0.0.1".into(),
        "--advertise-address=127.0.0.1".into(),
        format!("--secure-port={api_port}"),
        format!("--cert-dir={}", dir.display()),
        format!("--tls-cert-file={}", pki.serving_cert.display()),
        format!("--tls-private-key-file={}", pki.serving_key.display()),
        format!("--client-ca-file={}", pki.ca_cert.display()),
        "--authorization-mode=RBAC".into(),
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
        format!("--service-account-key-file={sa_public_key}"),
        format!("--service-account-signing-key-file={sa_key}"),
        "--service-cluster-ip-range=10.96.0.0/24".into(),
        "--allow-privileged=true".into(),
        "--profiling=false".into(),
        "--v=0".into(),
    ]
}

fn controller_manager_args(kubeconfig: &Path, pki: &Pki) -> Vec<String> {
    let kubeconfig = kubeconfig.display();
    vec![
        format!("--kubeconfig={kubeconfig}"),
        format!("--authentication-kubeconfig={kubeconfig}"),
        format!("--authorization-kubeconfig={kubeconfig}"),
        "--controllers=garbage-collector-controller,namespace-controller,serviceaccount-controller"
            .into(),
        "--leader-elect=false".into(),
        "--bind-address=127.0.0.1".into(),
        "--secure-port=0".into(),
        format!("--root-ca-file={}", pki.ca_cert.display()),
        format!(
            "--service-account-private-key-file={}",
            pki.service_account_key.display()
        ),
        "--use-service-account-credentials=false".into(),
        "--v=0".into(),
    ]
}
