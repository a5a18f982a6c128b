//! Eddy as a child process with a data directory, for tests that kill it.

#![allow(dead_code)]
#![allow(clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};

/// A running `eddy` binary.
pub struct EddyProcess {
    child: Child,
    /// Its Postgres-wire port.
    pub port: u16,
    /// Where its log goes.
    pub log: PathBuf,
}

impl EddyProcess {
    /// Start `eddy --data-dir dir` on a free port; returns once it accepts
    /// connections (with a client connected), or panics after `timeout`.
    pub async fn start(dir: &Path, log: &Path, timeout: Duration) -> (Self, Client) {
        let mut process = Self::spawn(dir, log);
        let client = process.ready(timeout).await;
        (process, client)
    }

    /// Start `eddy --data-dir dir` on a free port without waiting for it.
    pub fn spawn(dir: &Path, log: &Path) -> Self {
        Self::spawn_with(dir, log, &[])
    }

    /// [`EddyProcess::spawn`] with more command-line arguments.
    pub fn spawn_with(dir: &Path, log: &Path, args: &[&str]) -> Self {
        let port = free_port();
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("open the eddy log");
        let child = Command::new(env!("CARGO_BIN_EXE_eddy"))
            .arg("--pg-addr")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(dir)
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(log_file.try_clone().expect("log"))
            .stderr(log_file)
            .stdin(Stdio::null())
            .spawn()
            .expect("start the eddy binary");
        Self {
            child,
            port,
            log: log.to_path_buf(),
        }
    }

    /// Wait until the process accepts connections and connect a client;
    /// panics if it exits or `timeout` passes first.
    pub async fn ready(&mut self, timeout: Duration) -> Client {
        let log = self.log.clone();
        let started = Instant::now();
        loop {
            if let Ok(client) = self.connect().await {
                return client;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "eddy exited with {status} while starting; log {}:\n{}",
                    log.display(),
                    tail(&log)
                );
            }
            if started.elapsed() > timeout {
                panic!(
                    "eddy did not accept connections within {timeout:?}; log:\n{}",
                    tail(&log)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A new client connection.
    pub async fn connect(&self) -> Result<Client, tokio_postgres::Error> {
        let (client, connection) = tokio_postgres::connect(
            &format!("host=127.0.0.1 port={} user=eddy", self.port),
            NoTls,
        )
        .await?;
        tokio::spawn(connection);
        Ok(client)
    }

    /// SIGKILL the process and wait for it to be gone.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for EddyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The last lines of a log file.
pub fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A fresh directory under the target's temporary directory.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("eddy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a temporary directory");
    dir
}

/// Copy `from` into `to` file by file while a process may be writing it,
/// as a crash that kept only some of the writes would leave it. Files that
/// vanish while copying are skipped.
pub fn copy_live(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy");
    let Ok(entries) = std::fs::read_dir(from) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_file() {
            let _ = std::fs::copy(&path, to.join(entry.file_name()));
        }
    }
}

/// The seed of a crash test: `EDDY_CRASH_SEED`, or one from the clock.
pub fn crash_seed() -> u64 {
    std::env::var("EDDY_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
}

/// How many times a crash test kills Eddy: `EDDY_CRASH_KILLS`, default 20.
pub fn crash_kills() -> u32 {
    std::env::var("EDDY_CRASH_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
}

/// What a [`crash_loop`] did.
pub struct Crashes {
    /// Kills in all.
    pub killed: u32,
    /// Kills that hit a process still recovering.
    pub during_recovery: u32,
}

/// Kill Eddy `kills` times while input keeps coming. `running` is the
/// first process; each round `next` makes the round's input and
/// `produce` sends it, while Eddy runs (it is killed 50–1500 ms after the
/// round began, or once `produce` returns, whichever is later) or, one
/// round in seven or so, right after a restart, 0–300 ms in, before it
/// serves. Ends with no process running.
pub async fn crash_loop<M>(
    rng: &mut rand::rngs::StdRng,
    kills: u32,
    running: EddyProcess,
    spawn: impl Fn() -> EddyProcess,
    mut next: impl FnMut(&mut rand::rngs::StdRng) -> Vec<M>,
    mut produce: impl AsyncFnMut(&[M], &mut rand::rngs::StdRng),
) -> Crashes {
    use rand::Rng;
    let mut crashes = Crashes {
        killed: 0,
        during_recovery: 0,
    };
    let mut process = Some(running);
    while crashes.killed < kills {
        let input = next(rng);
        let running = match process.take() {
            Some(running) => running,
            None => {
                let mut running = spawn();
                if rng.random_bool(0.15) {
                    tokio::time::sleep(Duration::from_millis(rng.random_range(0..300))).await;
                    running.kill();
                    crashes.killed += 1;
                    crashes.during_recovery += 1;
                    produce(&input, rng).await;
                    continue;
                }
                let _ = running.ready(Duration::from_secs(60)).await;
                running
            }
        };
        let kill_after = Duration::from_millis(rng.random_range(50..1500));
        let started = Instant::now();
        produce(&input, rng).await;
        if let Some(left) = kill_after.checked_sub(started.elapsed()) {
            tokio::time::sleep(left).await;
        }
        running.kill();
        crashes.killed += 1;
    }
    crashes
}
