//! Measures how fast the Nexmark generator builds batches on one core.
//!
//! ```sh
//! cargo run --release -p eddy-connectors --example nexmark_speed -- [events] [events-per-call]
//! ```
//!
//! Defaults: 10,000,000 events, 1024 per call (`nexmark.max.chunk.size`'s default). Larger
//! calls are slower per event once a call's batches no longer fit the CPU caches.
//!
//! Prints events per second (events of every kind consumed) for all three tables, then for each
//! table alone (`NexmarkConfig::table`), which skips building the rows of the other two.

use std::time::Instant;

use eddy_connectors::nexmark::{NexmarkConfig, NexmarkGenerator, NexmarkTable};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let events: u64 = args.next().map_or(Ok(10_000_000), |s| s.parse())?;
    let default_chunk = NexmarkConfig::default().max_chunk_size;
    let chunk: usize = args.next().map_or(Ok(default_chunk), |s| s.parse())?;

    let tables = [None].into_iter().chain(NexmarkTable::ALL.map(Some));
    for table in tables {
        let config = NexmarkConfig {
            event_count: Some(events),
            table,
            ..NexmarkConfig::default()
        };
        let mut generator = NexmarkGenerator::new(config)?;
        let started = Instant::now();
        let (mut rows, mut bytes) = (0_usize, 0_usize);
        while let Some(batches) = generator.next_events(chunk)? {
            for batch in [&batches.person, &batches.auction, &batches.bid] {
                rows += batch.num_rows();
                bytes += batch.get_array_memory_size();
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        let tables = table.map_or("all tables".to_string(), |t| format!("{t} only"));
        println!(
            "{tables}: {events} events in {seconds:.3} s = {:.2} M events/s ({rows} rows, {:.0} MB of batches)",
            events as f64 / seconds / 1e6,
            bytes as f64 / 1e6,
        );
    }
    Ok(())
}
