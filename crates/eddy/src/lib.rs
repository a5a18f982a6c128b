//! The Eddy server: configuration and start-up.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use eddy_engine::Engine;
use tokio::net::TcpListener;
use tracing::{info, warn};

/// Default Postgres-wire listen address.
pub const DEFAULT_PG_ADDR: &str = "127.0.0.1:6543";

/// Server settings.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "eddy", version, about = "Eddy: a streaming SQL database")]
pub struct Config {
    /// Address to accept Postgres-wire connections on.
    #[arg(long, env = "EDDY_PG_ADDR", default_value = DEFAULT_PG_ADDR)]
    pub pg_addr: String,
    /// Directory for durable state: the catalog and every table's rows
    /// live there and survive restarts. Without it everything is in memory.
    #[arg(long, env = "EDDY_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Memory for the store's block cache, in MiB (with `--data-dir`).
    #[arg(long, env = "EDDY_CACHE_MB", default_value_t = 256)]
    pub cache_mb: usize,
    /// How often streamed input is checkpointed, in milliseconds (with
    /// `--data-dir`; DDL and DML are durable before they are acknowledged).
    #[arg(long, env = "EDDY_CHECKPOINT_INTERVAL_MS", default_value_t = 1000)]
    pub checkpoint_interval_ms: u64,
    /// Memory for the state of GROUP BY operators, in MiB (with
    /// `--data-dir`): beyond it, groups whose state is checkpointed leave
    /// memory and are read back from the data directory when their key
    /// comes again. 0 keeps only what changed since the last checkpoint.
    /// Default: half of the machine's memory.
    #[arg(long, env = "EDDY_MEMORY_BUDGET_MB")]
    pub memory_budget_mb: Option<usize>,
    /// Start with the demo: Nexmark sources generated in-process and a few
    /// materialized views over them (see `crates/eddy/src/demo.sql`).
    #[arg(long, env = "EDDY_DEMO")]
    pub demo: bool,
}

impl Config {
    /// Defaults (in memory, no demo) listening on `pg_addr`, as the command
    /// line gives them without flags.
    pub fn in_memory(pg_addr: &str) -> Self {
        <Self as clap::Parser>::parse_from(["eddy", "--pg-addr", pg_addr])
    }
}

/// Half of the machine's memory, in bytes (4 GiB where it cannot be read).
fn half_of_memory() -> usize {
    let total_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<usize>()
                        .ok()
                })
        })
        .unwrap_or(8 << 20);
    total_kib.saturating_mul(1024) / 2
}

/// The statements `--demo` runs at start-up.
pub const DEMO_SQL: &str = include_str!("demo.sql");

/// A running server.
#[derive(Debug)]
pub struct Server {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The engine behind it.
    pub engine: Arc<Engine>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Bind `config.pg_addr` and start serving in the background.
    pub async fn start(config: &Config) -> std::io::Result<Self> {
        let engine = match &config.data_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                let options = eddy_state::StoreOptions {
                    cache_bytes: config.cache_mb << 20,
                };
                let store =
                    eddy_state::Store::open(dir, &options).map_err(std::io::Error::other)?;
                info!(dir = %dir.display(), "opened the data directory");
                let options = eddy_engine::DurableOptions {
                    checkpoint_interval: std::time::Duration::from_millis(
                        config.checkpoint_interval_ms,
                    ),
                    memory_budget: Some(
                        config
                            .memory_budget_mb
                            .map_or_else(half_of_memory, |mb| mb << 20),
                    ),
                };
                Engine::open(store, options)
                    .await
                    .map_err(|e| std::io::Error::other(e.to_string()))?
            }
            None => {
                if config.memory_budget_mb.is_some() {
                    warn!("--memory-budget-mb applies with --data-dir only: without one, all state stays in memory");
                }
                Arc::new(Engine::new())
            }
        };
        let listener = TcpListener::bind(&config.pg_addr).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(eddy_pgwire::serve(engine.clone(), listener, async move {
            let _ = stopped.await;
        }));
        info!(%addr, "listening for postgres connections");
        if config.demo && !engine.snapshot().objects.is_empty() {
            info!("demo objects are stored in the data directory already; not creating them again");
        } else if config.demo {
            let session = eddy_engine::Session::new(engine.clone())
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let (outputs, error) = session.execute_sql(DEMO_SQL).await;
            if let Some(error) = error {
                return Err(std::io::Error::other(format!(
                    "the demo failed to start: {error}"
                )));
            }
            info!(
                statements = outputs.len(),
                "demo running: nexmark sources and views"
            );
        }
        Ok(Self {
            addr,
            engine,
            stop: Some(stop),
            task,
        })
    }

    /// Stop accepting connections and wait for the listener to close.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match (&mut self.task).await {
            Ok(result) => result,
            Err(error) => Err(std::io::Error::other(error)),
        }
    }
}
