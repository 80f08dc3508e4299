//! [`EtcdServer`]: a throw-away etcd on loopback, for tests (feature
//! `testing`).
//!
//! It runs the real `etcd` binary (Debian: `apt-get install etcd-server`)
//! with a fresh data directory on free loopback ports, and can stop,
//! restart (same ports, same data), freeze and thaw it, for outage tests.
//! When the binary is missing, [`EtcdServer::start`] fails and says how to
//! install it: tests never pass by skipping.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};
use tempfile::TempDir;

/// How long etcd may take to answer its health check after it is started.
const START_DEADLINE: Duration = Duration::from_secs(30);
/// How long etcd may take to exit after SIGTERM before it is killed.
const STOP_DEADLINE: Duration = Duration::from_secs(10);
/// Where Debian's `etcd-server` puts the binary.
const DEBIAN_BINARY: &str = "/usr/bin/etcd";

/// A single-member etcd cluster on 127.0.0.1, in a temporary directory.
/// Killed, and its directory removed, on drop.
///
/// ```
/// use tower_rollout_etcd::testing::EtcdServer;
///
/// let mut etcd = EtcdServer::start().expect("etcd");
/// assert!(etcd.endpoint().starts_with("http://127.0.0.1:"));
/// assert!(etcd.is_healthy());
/// etcd.stop().unwrap();
/// assert!(!etcd.is_healthy());
/// etcd.restart().unwrap();
/// assert!(etcd.is_healthy());
/// ```
#[derive(Debug)]
pub struct EtcdServer {
    binary: PathBuf,
    /// Holds `data/` and `etcd.log`; removed on drop.
    dir: TempDir,
    ports: Ports,
    /// `None` while stopped.
    child: Option<Child>,
}

/// The two loopback ports of one server.
#[derive(Debug, Clone, Copy)]
struct Ports {
    client: u16,
    peer: u16,
}

impl EtcdServer {
    /// Starts etcd on two free loopback ports and waits until it answers
    /// its health check (it has a leader). Fails when the `etcd` binary is
    /// not installed, saying how to install it.
    pub fn start() -> io::Result<EtcdServer> {
        let binary = find_binary()?;
        // A port found free can be taken before etcd binds it: try again
        // with other ports (and a fresh directory) when etcd does not start.
        let mut last = None;
        for _ in 0..3 {
            let mut server = EtcdServer {
                binary: binary.clone(),
                dir: tempfile::Builder::new().prefix("etcd-test-").tempdir()?,
                ports: free_ports()?,
                child: None,
            };
            match server.spawn_and_wait() {
                Ok(()) => return Ok(server),
                Err(err) => last = Some(err),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("etcd did not start")))
    }

    /// The client URL, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.client)
    }

    /// Whether etcd answers its health check now (within a second).
    pub fn is_healthy(&self) -> bool {
        healthy(self.ports.client)
    }

    /// Stops etcd (SIGTERM, then SIGKILL after 10 s) and waits for it to
    /// exit. Its data stays for [`restart`](Self::restart).
    pub fn stop(&mut self) -> io::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = pid_of(&child)?;
        // A frozen process does not handle SIGTERM until it is thawed.
        let _ = kill_process(pid, Signal::CONT);
        kill_process(pid, Signal::TERM).map_err(io::Error::from)?;
        let deadline = Instant::now() + STOP_DEADLINE;
        while Instant::now() < deadline {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// Starts etcd again on the same ports with the same data, after
    /// [`stop`](Self::stop) (stops it first if it runs), and waits until it
    /// answers.
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop()?;
        self.spawn_and_wait()
    }

    /// Freezes etcd (SIGSTOP): its sockets stay open but nothing answers,
    /// as with a network partition or a hung server.
    pub fn pause(&self) -> io::Result<()> {
        self.signal(Signal::STOP)
    }

    /// Thaws etcd after [`pause`](Self::pause) (SIGCONT).
    pub fn resume(&self) -> io::Result<()> {
        self.signal(Signal::CONT)
    }

    /// What etcd logged so far, for a failing test's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn signal(&self, signal: Signal) -> io::Result<()> {
        let child = self
            .child
            .as_ref()
            .ok_or_else(|| io::Error::other("etcd is stopped"))?;
        kill_process(pid_of(child)?, signal).map_err(io::Error::from)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    fn spawn_and_wait(&mut self) -> io::Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let child = self.command(log)?.spawn().map_err(|err| {
            io::Error::new(
                err.kind(),
                format!("cannot run {}: {err}", self.binary.display()),
            )
        })?;
        self.child = Some(child);
        self.wait_healthy()
    }

    fn command(&self, log: File) -> io::Result<Command> {
        let client = format!("http://127.0.0.1:{}", self.ports.client);
        let peer = format!("http://127.0.0.1:{}", self.ports.peer);
        let mut command = Command::new(&self.binary);
        command
            .arg("--name=default")
            .arg(format!(
                "--data-dir={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=default={peer}"))
            .arg("--logger=zap")
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        Ok(command)
    }

    fn wait_healthy(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    self.child = None;
                    return Err(io::Error::other(format!(
                        "etcd exited at start ({status}); its log:\n{}",
                        self.log()
                    )));
                }
            }
            if healthy(self.ports.client) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "etcd did not answer within {START_DEADLINE:?}; its log:\n{}",
                        self.log()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `etcd` in /usr/bin or on the PATH.
fn find_binary() -> io::Result<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    std::iter::once(PathBuf::from(DEBIAN_BINARY))
        .chain(on_path.into_iter().map(|dir| dir.join("etcd")))
        .find(|candidate| is_file(candidate))
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "the etcd binary is not installed (neither /usr/bin/etcd nor etcd on the \
                 PATH); these tests run a real etcd: install it with \
                 `apt-get install etcd-server` (Debian/Ubuntu)",
            )
        })
}

fn is_file(path: &Path) -> bool {
    path.metadata().is_ok_and(|m| m.is_file())
}

/// Two free loopback ports: bound at once (so they differ), then released.
fn free_ports() -> io::Result<Ports> {
    let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let client = TcpListener::bind(any)?;
    let peer = TcpListener::bind(any)?;
    Ok(Ports {
        client: client.local_addr()?.port(),
        peer: peer.local_addr()?.port(),
    })
}

/// etcd's `/health` on the client port says `"health":"true"` (it has a
/// leader and answers reads).
fn healthy(port: u16) -> bool {
    let ask = || -> io::Result<String> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let timeout = Duration::from_secs(1);
        let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    };
    ask().is_ok_and(|answer| answer.contains(r#""health":"true""#))
}

fn pid_of(child: &Child) -> io::Result<Pid> {
    i32::try_from(child.id())
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| io::Error::other("etcd's process id is out of range"))
}
