//! Child processes that cannot outlive the test binary.
//!
//! Every child is forked by one long-lived supervisor thread and asks the kernel for `SIGKILL`
//! when its parent goes away (`PR_SET_PDEATHSIG`). The signal is tied to the thread that forked
//! the child, so forking from a test's own thread (which ends with the test) would kill the
//! control plane under the next test: the supervisor thread lives as long as the process. A
//! panicking test, a failed assertion, `std::process::exit` or a `SIGKILL` of the test binary all
//! end the children with it. [`Process`] also kills its child when dropped.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

use crate::Error;

type SpawnReply = mpsc::Sender<std::io::Result<Child>>;

/// The supervisor thread's inbox. The sender lives in a static, so the thread never ends.
fn supervisor() -> &'static Mutex<mpsc::Sender<(Command, SpawnReply)>> {
    static SUPERVISOR: OnceLock<Mutex<mpsc::Sender<(Command, SpawnReply)>>> = OnceLock::new();
    SUPERVISOR.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<(Command, SpawnReply)>();
        std::thread::Builder::new()
            .name("envtest-supervisor".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("start the envtest supervisor thread");
        Mutex::new(tx)
    })
}

/// Asks the kernel to kill the child when its parent thread ends.
fn die_with_parent(command: &mut Command) {
    let parent = std::process::id();
    #[allow(unsafe_code)]
    // SAFETY: the closure runs in the forked child before exec and calls only async-signal-safe
    // functions (prctl, getppid).
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl: then nobody would send the signal.
            if libc::getppid() as u32 != parent {
                return Err(std::io::Error::other("parent exited before exec"));
            }
            Ok(())
        });
    }
}

/// A running child process with its output in a log file.
#[derive(Debug)]
pub struct Process {
    name: &'static str,
    program: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl Process {
    /// Starts `program args...` with stdout and stderr appended to `log`.
    pub fn start(
        name: &'static str,
        program: &Path,
        args: Vec<String>,
        log: PathBuf,
    ) -> Result<Self, Error> {
        let mut process = Self {
            name,
            program: program.to_path_buf(),
            args,
            log,
            child: None,
        };
        process.spawn()?;
        Ok(process)
    }

    fn spawn(&mut self) -> Result<(), Error> {
        let io_err = |what: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { what, path, source }
        };
        let out = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(io_err("open a log file", &self.log))?;
        let err = out
            .try_clone()
            .map_err(io_err("open a log file", &self.log))?;
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        die_with_parent(&mut command);
        let (reply, answer) = mpsc::channel();
        supervisor()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send((command, reply))
            .map_err(|_| Error::Supervisor)?;
        let child = answer
            .recv()
            .map_err(|_| Error::Supervisor)?
            .map_err(io_err("start a control-plane process", &self.program))?;
        self.child = Some(child);
        Ok(())
    }

    /// The process's name (`etcd`, `kube-apiserver`, ...).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Whether the process has exited; its status if so.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Kills the process (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the process and starts it again with the same arguments (and the same ports and
    /// data directory): a crash and a restart.
    pub fn restart(&mut self) -> Result<(), Error> {
        self.kill();
        self.spawn()
    }

    /// The last `bytes` of the process's log, for error messages.
    pub fn log_tail(&self, bytes: u64) -> String {
        let Ok(mut file) = File::open(&self.log) else {
            return String::new();
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = file.seek(SeekFrom::Start(len.saturating_sub(bytes)));
        let mut text = String::new();
        let _ = file.read_to_string(&mut text);
        text
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `n` distinct free TCP ports on 127.0.0.1 (bound together, then released).
pub fn free_ports(n: usize) -> Result<Vec<u16>, Error> {
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| Error::Io {
            what: "find a free port",
            path: PathBuf::from("127.0.0.1:0"),
            source,
        })?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<_, _>>()
        .map_err(|source| Error::Io {
            what: "find a free port",
            path: PathBuf::from("127.0.0.1:0"),
            source,
        })
}
