//! [`EtcdServer`]: a throw-away etcd on loopback, for tests (feature
//! `testing`).
//!
//! It runs the real `etcd` binary (Debian: `apt-get install etcd-server`)
//! with a fresh data directory on free loopback ports, plain or with TLS
//! ([`EtcdServer::start_tls`]), and can stop, restart (same ports, same
//! data), freeze and thaw it, for outage tests.
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
    tls: Option<ServerTls>,
    /// `None` while stopped.
    child: Option<Child>,
}

/// The server side of TLS, as PEM files: etcd's certificate and key, and
/// the CA whose client certificates it requires (`--client-cert-auth`).
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// etcd's certificate (valid for 127.0.0.1).
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// When set, clients must present a certificate signed by this CA.
    pub client_ca: Option<PathBuf>,
}

/// The loopback ports of one server.
#[derive(Debug, Clone, Copy)]
struct Ports {
    client: u16,
    peer: u16,
    /// Plain-HTTP `/health`, also when the client port speaks TLS.
    metrics: u16,
}

impl EtcdServer {
    /// Starts etcd on free loopback ports (client, peer, and a plain-HTTP
    /// health port) and waits until it answers its health check (it has a
    /// leader). Fails when the `etcd` binary is
    /// not installed, saying how to install it.
    pub fn start() -> io::Result<EtcdServer> {
        EtcdServer::start_with(None)
    }

    /// Starts etcd with TLS on its client port: [`endpoint`](Self::endpoint)
    /// is then `https://127.0.0.1:PORT`.
    pub fn start_tls(tls: ServerTls) -> io::Result<EtcdServer> {
        EtcdServer::start_with(Some(tls))
    }

    fn start_with(tls: Option<ServerTls>) -> io::Result<EtcdServer> {
        let binary = find_binary()?;
        // A port found free can be taken before etcd binds it: try again
        // with other ports (and a fresh directory) when etcd does not start.
        let mut last = None;
        for _ in 0..3 {
            let mut server = EtcdServer {
                binary: binary.clone(),
                dir: tempfile::Builder::new().prefix("etcd-test-").tempdir()?,
                ports: free_ports()?,
                tls: tls.clone(),
                child: None,
            };
            match server.spawn_and_wait() {
                Ok(()) => return Ok(server),
                Err(err) => last = Some(err),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("etcd did not start")))
    }

    /// The client URL, `http://127.0.0.1:PORT` (`https://` with TLS).
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.ports.client)
    }

    /// Whether etcd answers its health check now (within a second).
    pub fn is_healthy(&self) -> bool {
        healthy(self.ports.metrics)
    }

    /// Stops etcd (SIGTERM, then SIGKILL after 10 s) and waits for it to
    /// exit. Its data stays for [`restart`](Self::restart).
    pub fn stop(&mut self) -> io::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        // A frozen process does not handle SIGTERM until it is thawed.
        let asked = pid_of(&child).and_then(|pid| {
            let _ = kill_process(pid, Signal::CONT);
            kill_process(pid, Signal::TERM).map_err(io::Error::from)
        });
        if asked.is_ok() {
            let deadline = Instant::now() + STOP_DEADLINE;
            while Instant::now() < deadline {
                if child.try_wait()?.is_some() {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(10));
            }
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
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.ports.peer);
        let metrics = format!("http://127.0.0.1:{}", self.ports.metrics);
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
            .arg(format!("--listen-metrics-urls={metrics}"))
            .arg("--logger=zap")
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if let Some(tls) = &self.tls {
            command
                .arg(format!("--cert-file={}", tls.cert.display()))
                .arg(format!("--key-file={}", tls.key.display()));
            if let Some(ca) = &tls.client_ca {
                command
                    .arg("--client-cert-auth")
                    .arg(format!("--trusted-ca-file={}", ca.display()));
            }
        }
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
            if self.is_healthy() {
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
    let candidates = std::iter::once(PathBuf::from(DEBIAN_BINARY))
        .chain(on_path.into_iter().map(|dir| dir.join("etcd")));
    first_file(candidates)
}

/// The first of `candidates` that is a file, or how to install etcd.
fn first_file(mut candidates: impl Iterator<Item = PathBuf>) -> io::Result<PathBuf> {
    candidates
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

/// Three free loopback ports: bound at once (so they differ), then
/// released.
fn free_ports() -> io::Result<Ports> {
    let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let client = TcpListener::bind(any)?;
    let peer = TcpListener::bind(any)?;
    let metrics = TcpListener::bind(any)?;
    Ok(Ports {
        client: client.local_addr()?.port(),
        peer: peer.local_addr()?.port(),
        metrics: metrics.local_addr()?.port(),
    })
}

/// etcd's `/health` on the metrics port says `"health":"true"` (it has a
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_binary_says_how_to_install_it() {
        let nowhere = ["/nonexistent/etcd", "/also/not/etcd"].map(PathBuf::from);
        let err = first_file(nowhere.into_iter()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(
            err.to_string().contains("apt-get install etcd-server"),
            "{err}"
        );
    }
}
