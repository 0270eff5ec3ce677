//! HTTPS for the job callback endpoint. Training machines run outside the cluster and report to
//! the operator over the internet; when no Ingress terminates TLS in front of the endpoint (a
//! LoadBalancer Service, a node port, a tunnel), the callback listener serves HTTPS itself with
//! the certificate and key named by `jobs.callbackTls` (PEM files, usually a mounted
//! `kubernetes.io/tls` Secret). [`serve_tls`] is the TLS twin of [`super::serve`].
//!
//! The files are re-read every [`RELOAD_INTERVAL`]: kubelet updates a mounted Secret by swapping
//! its `..data` symlink, and cert-manager renews certificates long before they expire, so a new
//! pair is served from the next handshake on without a restart. A new pair that does not load
//! (unreadable, no certificate, no key, a key that does not match the certificate) is logged as a
//! warning once and the previous certificate stays in use. At startup, a pair that does not load
//! is an error naming the file.
//!
//! rustls with the aws-lc-rs provider (the one kube's client already uses), TLS 1.2 and 1.3.
//! ALPN offers only `http/1.1`, the one protocol the endpoint's axum server speaks: a client that
//! prefers HTTP/2 (curl does) falls back to it.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use parking_lot::{Mutex, RwLock};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::{CryptoProvider, aws_lc_rs};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// How often the certificate and key files are checked for a change.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(5);
/// Longest a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; further connections wait to be accepted.
const MAX_HANDSHAKES: usize = 256;

/// The PEM files the callback listener serves HTTPS with (`jobs.callbackTls`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first (`tls.crt` of a `kubernetes.io/tls` Secret).
    pub cert_file: PathBuf,
    /// The private key of the leaf: PKCS#8, PKCS#1 (RSA) or SEC1 (EC) (`tls.key`).
    pub key_file: PathBuf,
    /// How often the files are checked for a change; [`RELOAD_INTERVAL`] by default.
    pub reload_interval: Duration,
}

impl TlsFiles {
    /// The pair `cert_file`, `key_file`, checked for changes every [`RELOAD_INTERVAL`].
    pub fn new(cert_file: impl Into<PathBuf>, key_file: impl Into<PathBuf>) -> Self {
        Self {
            cert_file: cert_file.into(),
            key_file: key_file.into(),
            reload_interval: RELOAD_INTERVAL,
        }
    }
}

/// Why a certificate and key pair could not be loaded. Each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read the callback TLS {what} file {}: {source}", path.display())]
    Read {
        /// `certificate` or `key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The certificate file holds no usable PEM certificate.
    #[error("the callback TLS certificate file {} holds no PEM certificate{detail}", path.display())]
    Certificate {
        /// The file.
        path: PathBuf,
        /// What the PEM parser said, if anything (`": ..."`).
        detail: String,
    },
    /// The key file holds no usable PEM private key.
    #[error(
        "the callback TLS key file {} holds no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {message}",
        path.display()
    )]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The key is not the certificate's.
    #[error(
        "the callback TLS key file {} does not belong to the certificate in {}: {message}",
        key.display(),
        cert.display()
    )]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        message: String,
    },
}

/// Parses a PEM certificate chain and key into what rustls serves.
fn certified_key(
    files: &TlsFiles,
    cert_pem: &[u8],
    key_pem: &[u8],
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let cert_error = |detail: String| TlsError::Certificate {
        path: files.cert_file.clone(),
        detail,
    };
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_error(format!(": {e}")))?;
    if chain.is_empty() {
        return Err(cert_error(String::new()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Key {
        path: files.key_file.clone(),
        message: e.to_string(),
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => TlsError::Mismatch {
            cert: files.cert_file.clone(),
            key: files.key_file.clone(),
            message: e.to_string(),
        },
        // A key rustls cannot use (an unsupported algorithm) or a certificate it cannot parse.
        other => TlsError::Key {
            path: files.key_file.clone(),
            message: other.to_string(),
        },
    })
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

/// What a look at the files found.
#[derive(Debug)]
pub enum Reload {
    /// The files hold the pair already served (or the broken pair already reported).
    Unchanged,
    /// A new pair is served from the next handshake on.
    Reloaded,
    /// The files changed but do not load; the previous pair is still served.
    Rejected(TlsError),
}

/// The certificate the listener serves, re-read from its files by [`reload`](Self::reload).
pub struct CertResolver {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    /// The file contents last looked at, loaded or rejected: a change is loaded (or reported)
    /// once.
    seen: Mutex<(Vec<u8>, Vec<u8>)>,
    /// The last read error reported, so that a file that stays missing is reported once.
    last_read_error: Mutex<Option<String>>,
}

impl fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertResolver")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl CertResolver {
    /// Loads the pair; an error names the file at fault.
    pub fn load(files: TlsFiles) -> Result<Self, TlsError> {
        let provider = Arc::new(aws_lc_rs::default_provider());
        let cert = read("certificate", &files.cert_file)?;
        let key = read("key", &files.key_file)?;
        let current = certified_key(&files, &cert, &key, &provider)?;
        Ok(Self {
            files,
            provider,
            current: RwLock::new(Arc::new(current)),
            seen: Mutex::new((cert, key)),
            last_read_error: Mutex::new(None),
        })
    }

    /// The files this resolver serves.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Re-reads the files and serves their pair when it changed and loads; logs what it did.
    /// Blocking file reads of a few kilobytes.
    pub fn reload(&self) -> Reload {
        let contents = read("certificate", &self.files.cert_file)
            .and_then(|cert| Ok((cert, read("key", &self.files.key_file)?)));
        let (cert, key) = match contents {
            Ok(c) => {
                *self.last_read_error.lock() = None;
                c
            }
            Err(e) => {
                let message = e.to_string();
                let mut last = self.last_read_error.lock();
                if last.as_deref() != Some(message.as_str()) {
                    warn!(error = %message, "keeping the previous callback TLS certificate");
                    *last = Some(message);
                }
                return Reload::Rejected(e);
            }
        };
        {
            let seen = self.seen.lock();
            if seen.0 == cert && seen.1 == key {
                return Reload::Unchanged;
            }
        }
        let result = certified_key(&self.files, &cert, &key, &self.provider);
        *self.seen.lock() = (cert, key);
        match result {
            Ok(new) => {
                *self.current.write() = Arc::new(new);
                info!(cert_file = %self.files.cert_file.display(), "reloaded the callback TLS certificate");
                Reload::Reloaded
            }
            Err(e) => {
                warn!(error = %e, "the new callback TLS certificate does not load; keeping the previous one");
                Reload::Rejected(e)
            }
        }
    }

    /// Calls [`reload`](Self::reload) every `files.reload_interval` until `shutdown`.
    pub async fn watch(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.files.reload_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let this = self.clone();
            // Blocking reads off the async workers; a failed task only skips one look.
            let _ = tokio::task::spawn_blocking(move || this.reload()).await;
        }
    }

    /// The rustls server configuration serving this resolver's certificate.
    pub fn server_config(self: &Arc<Self>) -> ServerConfig {
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .expect("aws-lc-rs supports TLS 1.2 and 1.3")
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().clone())
    }
}

/// A listener handing axum connections whose TLS handshake completed. Handshakes run in their
/// own tasks (a slow client holds up no one), at most [`MAX_HANDSHAKES`] at once, each bounded
/// by [`HANDSHAKE_TIMEOUT`]; failed handshakes are logged at debug level.
pub struct TlsListener {
    incoming: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Accepts on `tcp` with `acceptor` until this listener is dropped.
    pub fn new(tcp: TcpListener, acceptor: TlsAcceptor) -> io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, incoming) = mpsc::channel(64);
        tokio::spawn(accept_loop(tcp, acceptor, tx));
        Ok(Self { incoming, local })
    }
}

async fn accept_loop(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let accepted = tokio::select! {
            () = tx.closed() => return,
            accepted = async {
                let permit = handshakes.clone().acquire_owned().await;
                (permit, tcp.accept().await)
            } => accepted,
        };
        let (Ok(permit), result) = accepted else {
            return;
        };
        let (stream, peer) = match result {
            Ok(conn) => conn,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Like axum's own listener: out of file descriptors and such; wait a little.
                warn!(error = %e, "callback endpoint: accept failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = tx.send((tls, peer)).await;
                }
                Ok(Err(e)) => debug!(%peer, error = %e, "callback TLS handshake failed"),
                Err(_) => debug!(%peer, "callback TLS handshake timed out"),
            }
        });
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.incoming.recv().await {
            Some(conn) => conn,
            // The accept loop ends only when this receiver is gone.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// Loads `tls`, binds `addr` and serves `router` over HTTPS until `shutdown` is cancelled,
/// re-reading the certificate and key when they change; returns the bound address. A pair that
/// does not load is an error (`InvalidData`) naming the file.
pub async fn serve_tls(
    addr: SocketAddr,
    router: Router,
    tls: TlsFiles,
    shutdown: CancellationToken,
) -> io::Result<SocketAddr> {
    let resolver = Arc::new(
        CertResolver::load(tls).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?,
    );
    let config = resolver.server_config();
    let listener = TlsListener::new(
        TcpListener::bind(addr).await?,
        TlsAcceptor::from(Arc::new(config)),
    )?;
    let bound = axum::serve::Listener::local_addr(&listener)?;
    tokio::spawn(resolver.watch(shutdown.clone()));
    super::spawn_server(listener, router, shutdown);
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    use axum::routing::post;
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

    /// A CA and a serving certificate for 127.0.0.1 and localhost signed by it, as PEM.
    struct Pair {
        ca_pem: String,
        cert_pem: String,
        key_pem: String,
    }

    fn pair(name: &str) -> Pair {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} CA"));
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key"))
            .expect("CA");
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("params")
            .signed_by(&key, &ca)
            .expect("certificate");
        Pair {
            ca_pem: ca.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A directory laid out like kubelet's Secret volume: `tls.crt` and `tls.key` are symlinks
    /// into `..data`, itself a symlink to a versioned directory that an update replaces
    /// atomically.
    struct SecretVolume {
        dir: tempfile::TempDir,
        version: u32,
    }

    impl SecretVolume {
        fn new(cert: &str, key: &str) -> Self {
            let dir = tempfile::tempdir().expect("temp dir");
            let mut volume = Self { dir, version: 0 };
            volume.update(cert, key);
            for name in ["tls.crt", "tls.key"] {
                std::os::unix::fs::symlink(format!("..data/{name}"), volume.dir.path().join(name))
                    .expect("symlink");
            }
            volume
        }

        /// What kubelet does on a Secret update: write a new version, swap `..data`.
        fn update(&mut self, cert: &str, key: &str) {
            self.version += 1;
            let version = format!("..v{}", self.version);
            let target = self.dir.path().join(&version);
            std::fs::create_dir(&target).expect("version dir");
            std::fs::write(target.join("tls.crt"), cert).expect("write cert");
            std::fs::write(target.join("tls.key"), key).expect("write key");
            let tmp = self.dir.path().join("..data_tmp");
            std::os::unix::fs::symlink(&version, &tmp).expect("symlink");
            std::fs::rename(&tmp, self.dir.path().join("..data")).expect("swap ..data");
        }

        fn files(&self) -> TlsFiles {
            TlsFiles {
                reload_interval: Duration::from_millis(100),
                ..TlsFiles::new(
                    self.dir.path().join("tls.crt"),
                    self.dir.path().join("tls.key"),
                )
            }
        }
    }

    fn router() -> Router {
        Router::new().route("/callback/ping", post(|| async { "pong" }))
    }

    /// POSTs to the endpoint trusting only `ca_pem`; `Ok` with the body when the handshake
    /// verified against it.
    async fn post_trusting(addr: SocketAddr, ca_pem: &str, path: &str) -> reqwest::Result<String> {
        let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA PEM");
        // A new client per call: a new connection, so a new handshake.
        let client = reqwest::Client::builder()
            .tls_certs_only([ca])
            .build()
            .expect("client");
        client
            .post(format!("https://localhost:{}{path}", addr.port()))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await
    }

    async fn eventually_served_by(addr: SocketAddr, ca_pem: &str) {
        for _ in 0..100 {
            if post_trusting(addr, ca_pem, "/callback/ping").await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the new certificate was never served");
    }

    #[tokio::test]
    async fn serves_https_and_follows_certificate_rotation() {
        let first = pair("first");
        let mut volume = SecretVolume::new(&first.cert_pem, &first.key_pem);
        let shutdown = CancellationToken::new();
        let _stop = shutdown.clone().drop_guard();
        let addr = serve_tls(
            "127.0.0.1:0".parse().expect("addr"),
            router(),
            volume.files(),
            shutdown.clone(),
        )
        .await
        .expect("serves");

        // HTTPS with the first certificate; an unknown route is the router's 404 over TLS.
        assert_eq!(
            post_trusting(addr, &first.ca_pem, "/callback/ping")
                .await
                .expect("HTTPS"),
            "pong"
        );
        let err = post_trusting(addr, &first.ca_pem, "/callback/nope")
            .await
            .expect_err("404");
        assert_eq!(err.status(), Some(reqwest::StatusCode::NOT_FOUND));
        // Plain HTTP gets no answer from a TLS listener.
        let plain = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}/callback/ping", addr.port()))
            .send()
            .await;
        assert!(
            plain.is_err() || !plain.expect("response").status().is_success(),
            "plain HTTP is not served"
        );

        // Rotation (kubelet swaps ..data): the second certificate is served, the first no more.
        let second = pair("second");
        volume.update(&second.cert_pem, &second.key_pem);
        eventually_served_by(addr, &second.ca_pem).await;
        post_trusting(addr, &first.ca_pem, "/callback/ping")
            .await
            .expect_err("the first CA no longer verifies the served certificate");

        // A broken update (the third certificate with the second's key, then garbage) keeps the
        // second certificate.
        let third = pair("third");
        volume.update(&third.cert_pem, &second.key_pem);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            post_trusting(addr, &second.ca_pem, "/callback/ping")
                .await
                .expect("still the second certificate"),
            "pong"
        );
        post_trusting(addr, &third.ca_pem, "/callback/ping")
            .await
            .expect_err("the mismatched pair is not served");
        volume.update("not a certificate", "not a key");
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            post_trusting(addr, &second.ca_pem, "/callback/ping")
                .await
                .expect("still the second certificate"),
            "pong"
        );

        // Fixed: the third pair is served.
        volume.update(&third.cert_pem, &third.key_pem);
        eventually_served_by(addr, &third.ca_pem).await;
    }

    /// A client offering HTTP/2 first (as curl does) gets HTTP/1.1, which the endpoint speaks.
    #[tokio::test]
    async fn alpn_settles_on_http1_for_clients_that_prefer_h2() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        use tokio_rustls::rustls::pki_types::ServerName;
        use tokio_rustls::rustls::{ClientConfig, RootCertStore};

        let pair = pair("alpn");
        let volume = SecretVolume::new(&pair.cert_pem, &pair.key_pem);
        let shutdown = CancellationToken::new();
        let _stop = shutdown.clone().drop_guard();
        let addr = serve_tls(
            "127.0.0.1:0".parse().expect("addr"),
            router(),
            volume.files(),
            shutdown.clone(),
        )
        .await
        .expect("serves");

        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(pair.ca_pem.as_bytes()).expect("CA PEM"))
            .expect("CA");
        let mut config =
            ClientConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost").expect("name"), tcp)
            .await
            .expect("handshake");
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
        tls.write_all(
            b"POST /callback/ping HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .await
        .expect("request");
        let mut response = String::new();
        tls.read_to_string(&mut response).await.expect("response");
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.ends_with("pong"), "{response}");
    }

    #[test]
    fn reload_reports_each_change_once() {
        let first = pair("first");
        let mut volume = SecretVolume::new(&first.cert_pem, &first.key_pem);
        let resolver = CertResolver::load(volume.files()).expect("loads");
        assert!(matches!(resolver.reload(), Reload::Unchanged));

        let second = pair("second");
        volume.update(&second.cert_pem, &first.key_pem);
        assert!(matches!(
            resolver.reload(),
            Reload::Rejected(TlsError::Mismatch { .. })
        ));
        // The same broken pair is not reported again.
        assert!(matches!(resolver.reload(), Reload::Unchanged));

        volume.update(&second.cert_pem, &second.key_pem);
        assert!(matches!(resolver.reload(), Reload::Reloaded));
        let served = resolver
            .current
            .read()
            .end_entity_cert()
            .expect("leaf")
            .to_vec();
        let expected = CertificateDer::from_pem_slice(second.cert_pem.as_bytes()).expect("PEM");
        assert_eq!(served, expected.to_vec());

        // A vanished file keeps the certificate.
        std::fs::remove_file(volume.dir.path().join("tls.key")).expect("remove");
        assert!(matches!(
            resolver.reload(),
            Reload::Rejected(TlsError::Read { what: "key", .. })
        ));
        assert_eq!(
            resolver
                .current
                .read()
                .end_entity_cert()
                .expect("leaf")
                .to_vec(),
            expected.to_vec()
        );
    }

    #[tokio::test]
    async fn a_bad_pair_at_startup_is_an_error_naming_the_file() {
        let good = pair("good");
        let other = pair("other");
        let dir = tempfile::tempdir().expect("temp dir");
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write");
            path
        };
        let cert = write("tls.crt", &good.cert_pem);
        let key = write("tls.key", &good.key_pem);
        let other_key = write("other.key", &other.key_pem);
        let empty = write("empty.pem", "");
        let missing = dir.path().join("missing.crt");

        let cases = [
            (
                TlsFiles::new(&missing, &key),
                missing.clone(),
                "cannot read",
            ),
            (
                TlsFiles::new(&cert, &missing),
                missing.clone(),
                "cannot read",
            ),
            (
                TlsFiles::new(&empty, &key),
                empty.clone(),
                "no PEM certificate",
            ),
            (
                TlsFiles::new(&cert, &empty),
                empty.clone(),
                "no usable PEM private key",
            ),
            (TlsFiles::new(&key, &key), key.clone(), "no PEM certificate"),
            (
                TlsFiles::new(&cert, &other_key),
                other_key.clone(),
                "does not belong",
            ),
        ];
        for (files, named, needle) in cases {
            let err = serve_tls(
                "127.0.0.1:0".parse().expect("addr"),
                router(),
                files.clone(),
                CancellationToken::new(),
            )
            .await
            .expect_err("a bad pair is refused");
            let message = err.to_string();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{message}");
            assert!(
                message.contains(&named.display().to_string()) && message.contains(needle),
                "{files:?}: {message}"
            );
        }
    }
}
