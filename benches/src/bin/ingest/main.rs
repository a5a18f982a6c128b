//! Ingest benchmarks: sources through the whole engine into materialized
//! views, as a user runs them (`CREATE SOURCE`, `CREATE MATERIALIZED VIEW`),
//! with figures printed, never asserted.
//!
//! * `nexmark`: the in-process Nexmark generator (bids, unpaced, a fixed
//!   number of events) into a pass-through view, a GROUP BY view and a
//!   `count(*)` view. For reference, the generator alone and the fold of
//!   the pass-through rows into a stored relation alone.
//! * `kafka`: JSON messages produced to a local tansu broker beforehand,
//!   then read, decoded and folded into the same three views. For
//!   reference, two bare librdkafka consumers of the same messages.
//! * `freshness`: a producer (a child process) sends JSON messages at a
//!   steady rate while a view's `max(seq)` is polled; a message's latency
//!   runs from its hand-off to librdkafka to the first committed snapshot
//!   that shows it.
//!
//! Events per second per core divide events by the CPU time (user plus
//! system, all threads) this process used while they flowed; the broker and
//! the producing child are other processes and are not counted.
//!
//! Run: `cargo run --release -p eddy-benches --bin ingest -- --help`.

mod broker;
mod cpu;
mod kafka;
mod nexmark;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use datafusion::arrow::array::{Array, ArrayRef, Int64Array, StringArray};
use datafusion::arrow::datatypes::DataType;
use eddy_connectors::source::SourceProgress;
use eddy_engine::{Engine, Output, Session, Snapshot};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Result<T, E = BoxError> = std::result::Result<T, E>;

#[derive(Parser, Debug)]
#[command(
    name = "ingest",
    about = "Throughput and freshness of Eddy's sources (Nexmark generator, Kafka JSON), through the engine into materialized views"
)]
struct Args {
    /// Run only these groups (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Group>,
    /// Views to run in the nexmark and kafka groups (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    views: Vec<View>,
    /// Nexmark events per run (bids are 46 in 50 of them).
    #[arg(long, default_value_t = 10_000_000)]
    nexmark_events: u64,
    /// JSON messages produced for the kafka runs.
    #[arg(long, default_value_t = 2_000_000)]
    kafka_messages: u64,
    /// Messages per second the freshness producer sends.
    #[arg(long, default_value_t = 100_000)]
    rate: u64,
    /// Seconds of the freshness run before latencies count.
    #[arg(long, default_value_t = 5)]
    warmup: u64,
    /// Seconds of the freshness run whose latencies count.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// `linger.ms` of the freshness producer: how long librdkafka waits to
    /// fill a batch (part of the measured latency). librdkafka's default;
    /// at 1 ms tansu falls behind on the many small batches.
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    /// How often the freshness poller reads the committed snapshot, in
    /// microseconds.
    #[arg(long, default_value_t = 1000)]
    poll_us: u64,
    /// In the freshness run, also read the topic with a bare librdkafka
    /// consumer (in the producing process), to tell the broker's share of
    /// the latency from Eddy's.
    #[arg(long)]
    reference_consumer: bool,
    /// Extra `WITH` options of the Kafka sources, `key=value` (e.g.
    /// `properties.fetch.wait.max.ms=10`); repeatable.
    #[arg(long = "source-option", value_parser = key_value)]
    source_options: Vec<(String, String)>,
    /// Leave librdkafka's fetch settings at their defaults in the Kafka
    /// runs instead of the bench's (see `TUNED_FETCH`).
    #[arg(long)]
    librdkafka_defaults: bool,
    /// Checkpoint interval of the checkpoint group's durable runs, ms.
    #[arg(long, default_value_t = 1000)]
    checkpoint_interval_ms: u64,
    /// Pairs of runs (in memory, durable) of the checkpoint group.
    #[arg(long, default_value_t = 3)]
    checkpoint_runs: usize,
    /// What the checkpoint group reads the topic as (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    checkpoint_inputs: Vec<kafka::Durable>,
    /// Memory budget of the checkpoint group's durable runs, MiB (default:
    /// none, as `eddy --data-dir` runs without `--memory-budget-mb`).
    #[arg(long)]
    checkpoint_budget_mb: Option<usize>,
    /// Tokio worker threads (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The freshness run's producer; started by the bench as a child
    /// process.
    #[command(hide = true)]
    Produce(kafka::PacedProducer),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Group {
    /// Nexmark generator into views.
    Nexmark,
    /// Kafka JSON, produced beforehand, into views.
    Kafka,
    /// Produce-to-visible latency at a steady rate.
    Freshness,
    /// A Kafka connector table in memory and with a data directory.
    Checkpoint,
}

/// The views the nexmark and kafka groups maintain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum View {
    /// Every event's columns, stored.
    Passthrough,
    /// Count and top price per auction.
    Groupby,
    /// One row: the number of events (and the last sequence number).
    Count,
}

impl View {
    const ALL: [View; 3] = [View::Passthrough, View::Groupby, View::Count];

    fn label(self) -> &'static str {
        match self {
            View::Passthrough => "pass-through",
            View::Groupby => "group by auction",
            View::Count => "count(*)",
        }
    }
}

/// `WITH` options the Kafka runs add unless `--librdkafka-defaults`.
/// `fetch.wait.max.ms`: tansu answers a fetch late under librdkafka's 500 ms
/// default, which caps any consumer at about 170K messages/s.
/// `fetch.queue.backoff.ms`: once librdkafka has `queued.min.messages`
/// (100K) waiting, it stops fetching for this long (1 s by default); a
/// reader that decodes slower than the broker delivers then stalls for a
/// second at a time.
const TUNED_FETCH: [(&str, &str); 2] = [
    ("properties.fetch.wait.max.ms", "1"),
    ("properties.fetch.queue.backoff.ms", "10"),
];

/// The Kafka sources' extra options: the tuned ones (unless left out),
/// then the user's, which win.
fn kafka_options(args: &Args) -> Vec<(String, String)> {
    let mut options: BTreeMap<String, String> = BTreeMap::new();
    if !args.librdkafka_defaults {
        for (key, value) in TUNED_FETCH {
            options.insert(key.to_string(), value.to_string());
        }
    }
    for (key, value) in &args.source_options {
        options.insert(key.clone(), value.clone());
    }
    options.into_iter().collect()
}

fn options_line(options: &[(String, String)]) -> String {
    if options.is_empty() {
        return "librdkafka defaults".to_string();
    }
    options
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn key_value(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("expected key=value, got {text:?}"))?;
    Ok((key.trim().to_string(), value.trim().to_string()))
}

/// Wall and CPU time from a starting point.
pub struct Meter {
    wall: Instant,
    cpu: Duration,
    threads: BTreeMap<String, Duration>,
}

/// What a measured stretch used.
#[derive(Debug, Clone)]
pub struct Usage {
    pub wall: Duration,
    pub cpu: Duration,
    /// CPU time by thread name, largest first.
    pub threads: Vec<(String, Duration)>,
}

impl Meter {
    pub fn start() -> Self {
        Self {
            threads: cpu::thread_times(),
            cpu: cpu::process_time(),
            wall: Instant::now(),
        }
    }

    pub fn stop(&self) -> Usage {
        let wall = self.wall.elapsed();
        let cpu = cpu::process_time().saturating_sub(self.cpu);
        let threads = cpu::thread_delta(&self.threads, &cpu::thread_times(), cpu);
        Usage { wall, cpu, threads }
    }
}

impl Usage {
    /// Cores busy on average.
    pub fn cores(&self) -> f64 {
        self.cpu.as_secs_f64() / self.wall.as_secs_f64().max(1e-9)
    }

    fn threads_line(&self) -> String {
        self.threads
            .iter()
            .map(|(name, time)| format!("{name} {:.2}s", time.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One measured run: events through a path, and what it used.
pub struct Figure {
    pub name: String,
    pub events: u64,
    pub usage: Usage,
    /// The target, events/s per core.
    pub target: Option<f64>,
    /// Whether the view ended up holding what the input implies.
    pub check: Result<(), String>,
    /// CPU time of the broker (another process) over the run.
    pub broker_cpu: Option<Duration>,
    /// Epochs the run committed (for the fold-alone run: epochs folded).
    pub epochs: Option<u64>,
}

impl Figure {
    fn per_second(&self) -> f64 {
        self.events as f64 / self.usage.wall.as_secs_f64().max(1e-9)
    }

    fn per_core(&self) -> f64 {
        self.events as f64 / self.usage.cpu.as_secs_f64().max(1e-9)
    }
}

fn print_figures(title: &str, figures: &[Figure]) {
    println!();
    println!("{title}");
    let broker = figures.iter().any(|f| f.broker_cpu.is_some());
    println!(
        "  {:<44} {:>10} {:>8} {:>11} {:>7} {:>6} {:>13} {:>11}{}  check",
        "run",
        "events",
        "wall s",
        "events/s",
        "CPU s",
        "cores",
        "events/s/core",
        "target/core",
        if broker { "  broker cores" } else { "" }
    );
    for figure in figures {
        let target = figure
            .target
            .map_or_else(|| "-".to_string(), |t| format!(">= {}", human(t)));
        let check = match &figure.check {
            Ok(()) => "ok".to_string(),
            Err(problem) => format!("FAILED: {problem}"),
        };
        let broker_cores = match figure.broker_cpu {
            Some(cpu) if broker => format!(
                "  {:>12.2}",
                cpu.as_secs_f64() / figure.usage.wall.as_secs_f64().max(1e-9)
            ),
            _ if broker => format!("  {:>12}", "-"),
            _ => String::new(),
        };
        println!(
            "  {:<44} {:>10} {:>8.2} {:>11} {:>7.2} {:>6.2} {:>13} {:>11}{broker_cores}  {check}",
            figure.name,
            figure.events,
            figure.usage.wall.as_secs_f64(),
            human(figure.per_second()),
            figure.usage.cpu.as_secs_f64(),
            figure.usage.cores(),
            human(figure.per_core()),
            target,
        );
    }
    println!("  epochs; CPU by thread (live threads, >= 1% of the run):");
    for figure in figures {
        let epochs = figure
            .epochs
            .map_or_else(String::new, |e| format!("{e} epochs; "));
        println!(
            "    {:<44} {epochs}{}",
            figure.name,
            figure.usage.threads_line()
        );
    }
}

/// `1234567.0` as `1.23M`.
fn human(value: f64) -> String {
    if value >= 1e6 {
        format!("{:.2}M", value / 1e6)
    } else if value >= 1e3 {
        format!("{:.0}K", value / 1e3)
    } else {
        format!("{value:.0}")
    }
}

/// An engine with one session on it, as a server holds them.
pub struct Eddy {
    pub engine: Arc<Engine>,
    session: Session,
}

impl Eddy {
    /// Needs the tokio runtime entered: the session starts the ingest loop.
    pub fn new() -> Result<Self> {
        let engine = Arc::new(Engine::new());
        let session = Session::new(engine.clone())?;
        Ok(Self { engine, session })
    }

    /// An engine with a data directory `dir`, checkpointing streamed
    /// input every `interval`, as `eddy --data-dir` runs it.
    /// `budget` bytes of memory budget (`None`: as the server runs by
    /// default, a budget never reached).
    pub async fn durable(
        dir: &std::path::Path,
        interval: Duration,
        budget: Option<usize>,
    ) -> Result<Self> {
        let store = eddy_state::Store::open(dir, &eddy_state::StoreOptions::default())?;
        let options = eddy_engine::DurableOptions {
            checkpoint_interval: interval,
            memory_budget: Some(budget.unwrap_or(usize::MAX)),
        };
        let engine = Engine::open(store, options).await?;
        let session = Session::new(engine.clone())?;
        Ok(Self { engine, session })
    }

    /// Run `sql`; the first error fails.
    pub async fn execute(&self, sql: &str) -> Result<Vec<Output>> {
        let (outputs, error) = self.session.execute_sql(sql).await;
        match error {
            Some(error) => Err(format!("{sql}: {error}").into()),
            None => Ok(outputs),
        }
    }

    /// The BIGINT in the first column of the first row `sql` returns.
    pub async fn query_i64(&self, sql: &str) -> Result<Option<i64>> {
        let Some(column) = self.first_value(sql, DataType::Int64).await? else {
            return Ok(None);
        };
        let values = column
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or("not an integer column")?;
        Ok((!values.is_null(0)).then(|| values.value(0)))
    }

    /// The first column of the first row `sql` returns, as text.
    pub async fn query_string(&self, sql: &str) -> Result<Option<String>> {
        let Some(column) = self.first_value(sql, DataType::Utf8).await? else {
            return Ok(None);
        };
        let values = column
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or("not a text column")?;
        Ok((!values.is_null(0)).then(|| values.value(0).to_string()))
    }

    /// The first column of the first row `sql` returns, cast to `to`, from
    /// that row on (`None`: no rows).
    async fn first_value(&self, sql: &str, to: DataType) -> Result<Option<ArrayRef>> {
        for output in self.execute(sql).await? {
            if let Output::Rows { batches, .. } = output {
                let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) else {
                    return Ok(None);
                };
                return Ok(Some(datafusion::arrow::compute::cast(
                    batch.column(0),
                    &to,
                )?));
            }
        }
        Err(format!("{sql} returned no rows").into())
    }

    /// The progress of the reader that feeds `view`.
    pub fn progress(&self, view: &str) -> Result<Arc<SourceProgress>> {
        self.engine
            .snapshot()
            .progress
            .iter()
            .find(|p| p.view() == view)
            .cloned()
            .ok_or_else(|| format!("no source reader feeds {view}").into())
    }

    /// The BIGINT `column` of the first row of relation `name` in the
    /// committed snapshot, without planning a query.
    pub fn read_i64(&self, name: &str, column: &str) -> Result<Option<i64>> {
        read_i64(&self.engine.snapshot(), name, column)
    }
}

/// The BIGINT `column` of the first row of relation `name` in `snapshot`.
pub fn read_i64(snapshot: &Snapshot, name: &str, column: &str) -> Result<Option<i64>> {
    let relation = snapshot
        .relations
        .get(name)
        .ok_or_else(|| format!("no relation {name}"))?;
    for batch in relation.batches()? {
        if batch.num_rows() == 0 {
            continue;
        }
        let values = batch
            .column_by_name(column)
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
            .ok_or_else(|| format!("{name} has no BIGINT column {column}"))?;
        return Ok((!values.is_null(0)).then(|| values.value(0)));
    }
    Ok(None)
}

/// Equal, or why not.
pub fn expect_equal(what: &str, got: Option<i64>, expected: u64) -> Result<(), String> {
    match got {
        Some(got) if got >= 0 && got as u64 == expected => Ok(()),
        got => Err(format!("{what} is {got:?}, expected {expected}")),
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(Command::Produce(producer)) = &args.command {
        return producer.run();
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all().thread_name("eddy-worker");
    if let Some(workers) = args.workers {
        runtime.worker_threads(workers.max(1));
    }
    let runtime = runtime.build()?;
    let groups = if args.only.is_empty() {
        vec![Group::Nexmark, Group::Kafka, Group::Freshness]
    } else {
        args.only.clone()
    };
    let views = if args.views.is_empty() {
        View::ALL.to_vec()
    } else {
        args.views.clone()
    };
    println!(
        "Eddy ingest benchmarks: {} cores, {} tokio workers, release build",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        args.workers
            .map_or_else(|| "default".to_string(), |w| w.to_string()),
    );
    println!("events/s = events / wall time; events/s/core = events / CPU time (user+system, all threads) of this process over the same stretch; cores = CPU time / wall time.");
    if groups.contains(&Group::Nexmark) {
        let figures = nexmark::run(&runtime, args.nexmark_events, &views)?;
        print_figures(
            &format!(
                "Nexmark generator -> view ({} events, bids only: events counted are bids)",
                args.nexmark_events
            ),
            &figures,
        );
    }
    let needs_broker = groups.contains(&Group::Kafka)
        || groups.contains(&Group::Freshness)
        || groups.contains(&Group::Checkpoint);
    if needs_broker {
        let broker = broker::Broker::start()?;
        let source_options = kafka_options(&args);
        if groups.contains(&Group::Kafka) {
            let figures = kafka::throughput(
                &runtime,
                &broker,
                args.kafka_messages,
                &views,
                &source_options,
            )?;
            print_figures(
                &format!(
                    "Kafka (local tansu) -> JSON decode -> view ({} messages produced beforehand; source options: {})",
                    args.kafka_messages,
                    options_line(&source_options)
                ),
                &figures,
            );
        }
        if groups.contains(&Group::Freshness) {
            let settings = kafka::FreshnessSettings {
                rate: args.rate,
                warmup: Duration::from_secs(args.warmup),
                measured: Duration::from_secs(args.seconds),
                linger_ms: args.linger_ms,
                poll: Duration::from_micros(args.poll_us.max(1)),
                source_options: source_options.clone(),
                reference_consumer: args.reference_consumer,
            };
            kafka::freshness(&runtime, &broker, &settings)?;
        }
        if groups.contains(&Group::Checkpoint) {
            let interval = Duration::from_millis(args.checkpoint_interval_ms.max(1));
            kafka::checkpoint_backlog(&runtime, &broker, args.kafka_messages)?;
            let settings = kafka::CheckpointRuns {
                messages: args.kafka_messages,
                interval,
                budget: args.checkpoint_budget_mb.map(|mb| mb << 20),
                runs: args.checkpoint_runs,
            };
            let inputs = match args.checkpoint_inputs.is_empty() {
                true => kafka::Durable::ALL.to_vec(),
                false => args.checkpoint_inputs.clone(),
            };
            for input in inputs {
                let title = input.title();
                let figures = kafka::checkpoint_overhead(
                    &runtime,
                    &broker,
                    input,
                    &settings,
                    &source_options,
                )?;
                print_figures(
                    &format!(
                        "{title}, in memory vs --data-dir ({} messages produced beforehand)",
                        args.kafka_messages
                    ),
                    &figures,
                );
                let median = |durable: bool| {
                    let mut rates: Vec<f64> = figures
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| (i % 2 == 1) == durable)
                        .map(|(_, f)| f.per_second())
                        .collect();
                    rates.sort_by(f64::total_cmp);
                    rates[rates.len() / 2]
                };
                let (memory, durable) = (median(false), median(true));
                println!(
                    "checkpoint overhead ({title}): median {} events/s in memory, {} with --data-dir: {:.1}% slower (target <= 10%)",
                    human(memory),
                    human(durable),
                    (1.0 - durable / memory) * 100.0
                );
            }
        }
    }
    Ok(())
}
