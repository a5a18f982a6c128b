//! A local tansu broker (a Kafka-protocol broker in one process, storage in
//! memory) for the Kafka runs, started like the integration tests' broker
//! (`crates/eddy/tests/support/broker.rs`, which benches cannot import).
//!
//! The broker runs under a small shell that kills it when the pipe on the
//! shell's stdin closes, so it goes when the bench ends, however it ends.
//! tansu 0.6 creates no topics on demand: [`Broker::create_topic`] does.

use std::fs::File;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;

use crate::Result;

/// How long the broker may take to answer its first metadata request.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout of one admin or metadata request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the broker given as `$0 $@` and kills it once stdin reaches EOF.
const SUPERVISOR: &str = r#"exec 3<&0
"$0" "$@" </dev/null &
broker=$!
{ read -r _ <&3; kill -KILL "$broker" 2>/dev/null; } &
wait "$broker""#;

/// A tansu process on a free port of 127.0.0.1; killed on drop.
pub struct Broker {
    supervisor: Child,
    lifeline: Option<ChildStdin>,
    port: u16,
    log: PathBuf,
    admin: AdminClient<DefaultClientContext>,
}

impl Broker {
    /// Start tansu (`$EDDY_TANSU`, else the one `scripts/setup.sh` builds)
    /// and wait until it answers a metadata request.
    pub fn start() -> Result<Self> {
        let binary = tansu_binary()?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let log = std::env::temp_dir().join(format!(
            "eddy-bench-tansu-{}-{port}.log",
            std::process::id()
        ));
        let output = File::create(&log)?;
        let errors = output.try_clone()?;
        let url = format!("tcp://127.0.0.1:{port}");
        let mut supervisor = Command::new("/bin/sh")
            .arg("-c")
            .arg(SUPERVISOR)
            .arg(&binary)
            .arg("broker")
            .args(["--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .env_remove("SCHEMA_REGISTRY")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("CLUSTER_ID")
            .env("NO_COLOR", "1")
            .stdin(Stdio::piped())
            .stdout(output)
            .stderr(errors)
            .process_group(0)
            .spawn()?;
        let lifeline = supervisor.stdin.take();
        let admin = client_config(&format!("127.0.0.1:{port}")).create()?;
        let mut broker = Self {
            supervisor,
            lifeline,
            port,
            log,
            admin,
        };
        broker.wait_until_ready()?;
        Ok(broker)
    }

    fn wait_until_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.supervisor.try_wait()? {
                return Err(format!("tansu exited ({status}); log {}", self.log.display()).into());
            }
            let metadata = self
                .admin
                .inner()
                .fetch_metadata(None, Duration::from_millis(500));
            if let Ok(metadata) = metadata {
                if metadata
                    .brokers()
                    .iter()
                    .any(|b| b.port() == i32::from(self.port))
                {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "tansu did not answer within {START_TIMEOUT:?}; log {}",
                    self.log.display()
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// CPU time the broker (its whole process group) has used so far.
    pub fn cpu_time(&self) -> Duration {
        crate::cpu::group_time(self.supervisor.id())
    }

    /// `bootstrap.servers` of this broker.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A client configuration for this broker that never creates topics.
    pub fn client_config(&self) -> ClientConfig {
        client_config(&self.bootstrap())
    }

    /// Create a topic of one partition and wait until it has a leader.
    pub fn create_topic(&self, runtime: &tokio::runtime::Runtime, name: &str) -> Result<()> {
        let topic = NewTopic::new(name, 1, TopicReplication::Fixed(1));
        let options = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
        for result in runtime.block_on(self.admin.create_topics([&topic], &options))? {
            result.map_err(|(topic, code)| format!("create topic {topic}: {code}"))?;
        }
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        loop {
            let metadata = self
                .admin
                .inner()
                .fetch_metadata(Some(name), REQUEST_TIMEOUT)?;
            let ready = metadata.topics().iter().any(|t| {
                t.name() == name
                    && t.error().is_none()
                    && !t.partitions().is_empty()
                    && t.partitions().iter().all(|p| p.leader() >= 0)
            });
            if ready {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("topic {name} has no leader after {REQUEST_TIMEOUT:?}").into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        drop(self.lifeline.take());
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{}", self.supervisor.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.supervisor.kill();
        let _ = self.supervisor.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

fn tansu_binary() -> Result<PathBuf> {
    let binary = match std::env::var_os("EDDY_TANSU") {
        Some(path) => PathBuf::from(path),
        None => {
            let home = std::env::var_os("HOME").ok_or("HOME is not set")?;
            PathBuf::from(home).join(".cache/eddy/tools/bin/tansu")
        }
    };
    if !binary.is_file() {
        return Err(format!(
            "no tansu broker at {}: run scripts/setup.sh, or point EDDY_TANSU at a tansu 0.6 binary",
            binary.display()
        )
        .into());
    }
    Ok(binary)
}

fn client_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("allow.auto.create.topics", "false")
        .set("socket.timeout.ms", "10000");
    config
}
