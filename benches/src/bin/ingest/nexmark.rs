//! The Nexmark generator into views.
//!
//! Each run gets an engine of its own, creates the bid source (unpaced,
//! bounded to the given number of events; not timed), then times from
//! `CREATE MATERIALIZED VIEW` until the reader has ended and `FLUSH` has
//! committed what it queued: every bid is then visible in the view.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use eddy_common::ChangeBatch;
use eddy_connectors::{NexmarkConfig, NexmarkGenerator, NexmarkTable};
use eddy_engine::Relation;

use crate::{expect_equal, Eddy, Figure, Meter, Result, View};

/// The target for the pass-through view, events/s per core.
const PASSTHROUGH_TARGET: f64 = 2e6;
/// How long a run may take before the bench gives up.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);
/// Events the generator makes per call (as the source does).
const GENERATOR_BATCH: usize = 8192;
/// Generator batches per epoch in the fold-alone run: under a backlog an
/// epoch takes what the reader has queued, and a reader queues 16 batches.
const EPOCH_BATCHES: usize = 16;

fn source_sql(events: u64) -> String {
    format!(
        "CREATE SOURCE bid WITH (connector = 'nexmark', nexmark.table.type = 'Bid', \
         nexmark.event.num = '{events}')"
    )
}

fn view_sql(view: View) -> &'static str {
    match view {
        View::Passthrough => {
            "CREATE MATERIALIZED VIEW v AS SELECT auction, bidder, price, date_time FROM bid"
        }
        View::Groupby => {
            "CREATE MATERIALIZED VIEW v AS \
             SELECT auction, count(*) AS bids, max(price) AS top_price FROM bid GROUP BY auction"
        }
        View::Count => "CREATE MATERIALIZED VIEW v AS SELECT count(*) AS bids FROM bid",
    }
}

/// Bids among the first `events` event ids.
fn bids_in(events: u64) -> u64 {
    (0..events)
        .filter(|id| NexmarkTable::of_event(*id) == NexmarkTable::Bid)
        .count() as u64
}

pub fn run(runtime: &tokio::runtime::Runtime, events: u64, views: &[View]) -> Result<Vec<Figure>> {
    let bids = bids_in(events);
    // On a worker thread, where the engine runs them.
    let alone = runtime.spawn(async move { generator_alone(events, bids) });
    let mut figures = vec![runtime.block_on(alone)??];
    if views.contains(&View::Passthrough) {
        let fold = runtime.spawn(async move { fold_alone(events, bids) });
        figures.push(runtime.block_on(fold)??);
    }
    for view in views {
        println!("nexmark: {} ...", view.label());
        figures.push(runtime.block_on(through_view(*view, events, bids))?);
    }
    Ok(figures)
}

/// The generator on its own: what the source costs before the engine sees
/// a row. Run on a runtime worker, as the source's reader is: on the main
/// thread the same loop was 20-30% slower (allocation costs differ).
fn generator_alone(events: u64, bids: u64) -> Result<Figure> {
    let options = BTreeMap::from([
        ("nexmark.table.type".to_string(), "Bid".to_string()),
        ("nexmark.event.num".to_string(), events.to_string()),
    ]);
    let mut generator = NexmarkGenerator::new(NexmarkConfig::from_options(&options)?)?;
    let meter = Meter::start();
    let mut rows = 0u64;
    while let Some(batches) = generator.next_events(GENERATOR_BATCH)? {
        rows += batches.table(NexmarkTable::Bid).num_rows() as u64;
    }
    Ok(Figure {
        name: "generator alone (no engine)".into(),
        events: rows,
        usage: meter.stop(),
        target: None,
        check: expect_equal("bids generated", Some(rows as i64), bids),
        broker_cpu: None,
        epochs: None,
    })
}

/// The bids as the pass-through view's rows: its columns, with SQL's
/// timestamp type (as the source casts them).
fn view_rows(bids: &RecordBatch) -> Result<RecordBatch> {
    let schema = std::sync::Arc::new(Schema::new(vec![
        Field::new("auction", DataType::Int64, true),
        Field::new("bidder", DataType::Int64, true),
        Field::new("price", DataType::Int64, true),
        Field::new(
            "date_time",
            DataType::Timestamp(TimeUnit::Nanosecond, None),
            true,
        ),
    ]));
    let columns = schema
        .fields()
        .iter()
        .map(|field| {
            let column = bids
                .column_by_name(field.name())
                .ok_or_else(|| format!("the bid table has no column {}", field.name()))?;
            Ok(cast(column, field.data_type())?)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// Folding the pass-through view's output into its stored contents, alone:
/// `Relation::apply` of each epoch's rows (concatenated, as the engine
/// does), with the previous version kept alive as the published snapshot
/// keeps it. The rows are generated beforehand, untimed.
fn fold_alone(events: u64, bids: u64) -> Result<Figure> {
    let options = BTreeMap::from([
        ("nexmark.table.type".to_string(), "Bid".to_string()),
        ("nexmark.event.num".to_string(), events.to_string()),
    ]);
    let mut generator = NexmarkGenerator::new(NexmarkConfig::from_options(&options)?)?;
    let mut epochs: Vec<Vec<ChangeBatch>> = vec![Vec::new()];
    while let Some(batches) = generator.next_events(GENERATOR_BATCH)? {
        let rows = view_rows(batches.table(NexmarkTable::Bid))?;
        if epochs.last().is_some_and(|e| e.len() == EPOCH_BATCHES) {
            epochs.push(Vec::new());
        }
        if let Some(epoch) = epochs.last_mut() {
            epoch.push(ChangeBatch::inserts(rows));
        }
    }
    let schema = epochs
        .first()
        .and_then(|e| e.first())
        .map(ChangeBatch::schema)
        .ok_or("no bids generated")?;
    let mut relation = Relation::new(schema.clone())?;
    let mut published = relation.clone();
    let meter = Meter::start();
    for epoch in &epochs {
        relation.apply(&ChangeBatch::concat(&schema, epoch)?)?;
        published = relation.clone();
    }
    let usage = meter.stop();
    let rows: i64 = published
        .contents()?
        .iter()
        .flat_map(|c| c.weights().to_vec())
        .sum();
    Ok(Figure {
        name: "fold into stored view alone (Relation::apply)".into(),
        events: bids,
        usage,
        target: None,
        check: expect_equal("rows stored", Some(rows), bids),
        broker_cpu: None,
        epochs: Some(epochs.len() as u64),
    })
}

async fn through_view(view: View, events: u64, bids: u64) -> Result<Figure> {
    let eddy = Eddy::new()?;
    eddy.execute(&source_sql(events)).await?;
    let epoch_before = eddy.engine.snapshot().epoch;
    let meter = Meter::start();
    eddy.execute(view_sql(view)).await?;
    let progress = eddy.progress("v")?;
    let deadline = Instant::now() + RUN_TIMEOUT;
    loop {
        let status = progress.status();
        if status == "ended" {
            break;
        }
        if status.starts_with("failed") || Instant::now() >= deadline {
            return Err(format!("nexmark source: {status}").into());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // The reader has queued its last batch; FLUSH commits what is queued.
    eddy.engine.flush().await?;
    let usage = meter.stop();
    let epochs = eddy.engine.snapshot().epoch - epoch_before;
    let check = match view {
        View::Passthrough => expect_equal(
            "count(*) of the view",
            eddy.query_i64("SELECT count(*) FROM v").await?,
            bids,
        ),
        View::Groupby => expect_equal(
            "sum(bids) of the view",
            eddy.query_i64("SELECT sum(bids) FROM v").await?,
            bids,
        ),
        View::Count => expect_equal("bids", eddy.read_i64("v", "bids")?, bids),
    };
    Ok(Figure {
        name: format!("generator -> {}", view.label()),
        events: bids,
        usage,
        target: (view == View::Passthrough).then_some(PASSTHROUGH_TARGET),
        check,
        broker_cpu: None,
        epochs: Some(epochs),
    })
}
