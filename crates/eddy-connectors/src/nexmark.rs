//! The Nexmark generator: people, auctions and bids of an online auction site, as Arrow
//! batches.
//!
//! This is a port of the reference Java generator (`nexmark-flink`'s `NexmarkGenerator`,
//! `GeneratorConfig` and `model/*Generator`) in its deterministic form, where each event seeds
//! a `java.util.Random` with its event id. Everything about an event follows from its id:
//!
//! - its kind: of every 50 consecutive ids (by `id % 50`), 1 is a person, 3 are auctions and 46
//!   are bids;
//! - the ids it carries: the person and auction ids count the persons and auctions before it, and
//!   the auctions and people a bid or auction refers to are drawn near the newest ones (a "hot"
//!   one most of the time, a random recent one otherwise, up to 10 ids ahead, as in Java);
//! - its random values: a port of `java.util.Random`, seeded with the id, so that the
//!   rows equal the Java generator's for the same event id (with [`NexmarkConfig::seed`] 0);
//! - its timestamp: `base_time + event_number * inter_event_delay`, in whole milliseconds as in
//!   Java, where the event number counts from [`NexmarkConfig::first_event_id`].
//!
//! So the generator keeps no state but the next event id: [`NexmarkGenerator::resume`] from a
//! checkpointed id continues the stream exactly, and any range of ids can be generated on its
//! own.
//!
//! # Differences from the Java generator
//!
//! The first nexmark-flink generator (nexmark/nexmark 558d931) seeded a `java.util.Random` per
//! event; the commit that added bid channels and urls (8ff9866) switched to one unseeded Random
//! for the whole stream, and a later one (efed4d6) to an unseeded `SplittableRandom` and an
//! `extra` cut out of a fixed random megabyte. This port keeps the per-event seeding, which is
//! what makes resuming and generating id ranges independently possible, and the current fields
//! and order of draws. With seed 0 its rows equal, field for field, those of the current model
//! generators driven by `new Random(eventId)`, except:
//!
//! - Java's channel urls are drawn once per process from an unseeded Random; here they come from
//!   a Random with a fixed seed (mixed with [`NexmarkConfig::seed`]), in Java's order.
//! - Java adds `FIRST_PERSON_ID` to a bid's bidder twice, pointing it 1000 persons ahead; it is
//!   added once here, so bidders are persons as sellers are.
//! - Out-of-order groups (`outOfOrderGroupSize`, 1 by default) are not ported: events come in
//!   id order. As in nexmark-flink, only the first event rate spaces events (no rate shapes).

mod auction;
mod bid;
mod config;
mod java_random;
mod person;
mod strings;

use std::fmt;
use std::ops::Range;
use std::str::FromStr;
use std::sync::{Arc, LazyLock};

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

pub use config::{NexmarkConfig, DEFAULT_BASE_TIME_MILLIS, MAX_AVG_BYTE_SIZE, OPTION_KEYS};

use crate::error::{Error, Result};
use auction::AuctionColumns;
use bid::{BidColumns, ChannelTable};
use java_random::JavaRandom;
use person::PersonColumns;

/// Persons per 50 events.
const PERSON_PROPORTION: i64 = 1;
/// Auctions per 50 events.
const AUCTION_PROPORTION: i64 = 3;
/// Bids per 50 events.
const BID_PROPORTION: i64 = 46;
/// Events per proportion cycle.
const TOTAL_PROPORTION: i64 = PERSON_PROPORTION + AUCTION_PROPORTION + BID_PROPORTION;

/// Person ids start here (Java's `FIRST_PERSON_ID`).
const FIRST_PERSON_ID: i64 = 1000;
/// Auction ids start here (Java's `FIRST_AUCTION_ID`).
const FIRST_AUCTION_ID: i64 = 1000;
/// Category ids start here (Java's `FIRST_CATEGORY_ID`).
const FIRST_CATEGORY_ID: i64 = 10;

/// One of the three Nexmark tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NexmarkTable {
    /// People who sell and bid.
    Person,
    /// Items put up for auction.
    Auction,
    /// Bids on auctions.
    Bid,
}

impl NexmarkTable {
    /// All three tables, in event-kind order.
    pub const ALL: [NexmarkTable; 3] = [
        NexmarkTable::Person,
        NexmarkTable::Auction,
        NexmarkTable::Bid,
    ];

    /// The table an event id produces a row of: of every 50 ids, 1 person, 3 auctions, 46 bids.
    pub fn of_event(event_id: u64) -> NexmarkTable {
        let offset = event_id % TOTAL_PROPORTION as u64;
        if offset < PERSON_PROPORTION as u64 {
            NexmarkTable::Person
        } else if offset < (PERSON_PROPORTION + AUCTION_PROPORTION) as u64 {
            NexmarkTable::Auction
        } else {
            NexmarkTable::Bid
        }
    }

    /// The table's name in lowercase, as in SQL.
    pub fn name(self) -> &'static str {
        match self {
            NexmarkTable::Person => "person",
            NexmarkTable::Auction => "auction",
            NexmarkTable::Bid => "bid",
        }
    }
}

impl fmt::Display for NexmarkTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for NexmarkTable {
    type Err = Error;

    /// Parses `person`, `auction` or `bid`, in any case.
    fn from_str(s: &str) -> Result<Self> {
        NexmarkTable::ALL
            .into_iter()
            .find(|table| table.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                Error::invalid_option("nexmark.table.type", s, "expected person, auction or bid")
            })
    }
}

fn nullable(name: &str, data_type: DataType) -> Field {
    Field::new(name, data_type, true)
}

fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, None)
}

static PERSON_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        nullable("id", DataType::Int64),
        nullable("name", DataType::Utf8),
        nullable("email_address", DataType::Utf8),
        nullable("credit_card", DataType::Utf8),
        nullable("city", DataType::Utf8),
        nullable("state", DataType::Utf8),
        nullable("date_time", timestamp()),
        nullable("extra", DataType::Utf8),
    ]))
});

static AUCTION_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        nullable("id", DataType::Int64),
        nullable("item_name", DataType::Utf8),
        nullable("description", DataType::Utf8),
        nullable("initial_bid", DataType::Int64),
        nullable("reserve", DataType::Int64),
        nullable("date_time", timestamp()),
        nullable("expires", timestamp()),
        nullable("seller", DataType::Int64),
        nullable("category", DataType::Int64),
        nullable("extra", DataType::Utf8),
    ]))
});

static BID_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        nullable("auction", DataType::Int64),
        nullable("bidder", DataType::Int64),
        nullable("price", DataType::Int64),
        nullable("channel", DataType::Utf8),
        nullable("url", DataType::Utf8),
        nullable("date_time", timestamp()),
        nullable("extra", DataType::Utf8),
    ]))
});

/// The Arrow schema of a Nexmark table, with RisingWave's and Flink's column names.
/// `BIGINT` columns are `Int64`, `VARCHAR` ones `Utf8` and `TIMESTAMP` ones
/// `Timestamp(Microsecond, None)`; every column is nullable (none is ever null).
pub fn schema(table: NexmarkTable) -> SchemaRef {
    match table {
        NexmarkTable::Person => Arc::clone(&PERSON_SCHEMA),
        NexmarkTable::Auction => Arc::clone(&AUCTION_SCHEMA),
        NexmarkTable::Bid => Arc::clone(&BID_SCHEMA),
    }
}

/// The rows of a run of consecutive events, one batch per table.
#[derive(Debug, Clone)]
pub struct NexmarkBatches {
    /// The event ids consumed, of all kinds.
    pub event_ids: Range<u64>,
    /// The person events among them.
    pub person: RecordBatch,
    /// The auction events among them.
    pub auction: RecordBatch,
    /// The bid events among them.
    pub bid: RecordBatch,
}

impl NexmarkBatches {
    /// The batch of one table.
    pub fn table(&self, table: NexmarkTable) -> &RecordBatch {
        match table {
            NexmarkTable::Person => &self.person,
            NexmarkTable::Auction => &self.auction,
            NexmarkTable::Bid => &self.bid,
        }
    }
}

/// The configuration in the form the Java logic uses it: Java's `int`s and `long`s.
#[derive(Debug)]
pub(crate) struct Params {
    /// XOR-ed into every event id to seed its Random; 0 for seed 0.
    seed_mask: i64,
    base_time_millis: i64,
    inter_event_delay_micros: f64,
    hot_auction_ratio: i32,
    hot_bidder_ratio: i32,
    hot_seller_ratio: i32,
    active_people: i64,
    in_flight_auctions: i64,
    avg_person_byte_size: i32,
    avg_auction_byte_size: i32,
    avg_bid_byte_size: i32,
    channels: ChannelTable,
}

impl Params {
    fn new(config: &NexmarkConfig) -> Self {
        // Validated: these fit an i32, and ids fit an i64.
        let int = |value: u32| i32::try_from(value).unwrap_or(i32::MAX);
        let seed_mask = if config.seed == 0 {
            0
        } else {
            splitmix64(config.seed) as i64
        };
        Self {
            seed_mask,
            base_time_millis: config.base_time_millis,
            inter_event_delay_micros: config.inter_event_delay_micros(),
            hot_auction_ratio: int(config.hot_auction_ratio),
            hot_bidder_ratio: int(config.hot_bidder_ratio),
            hot_seller_ratio: int(config.hot_seller_ratio),
            active_people: i64::from(config.active_people),
            in_flight_auctions: i64::from(config.in_flight_auctions),
            avg_person_byte_size: int(config.avg_person_byte_size),
            avg_auction_byte_size: int(config.avg_auction_byte_size),
            avg_bid_byte_size: int(config.avg_bid_byte_size),
            channels: ChannelTable::new(seed_mask),
        }
    }

    /// `GeneratorConfig.timestampForEvent`: milliseconds, truncated as in Java.
    fn timestamp_millis(&self, event_number: i64) -> i64 {
        let micros = (event_number as f64 * self.inter_event_delay_micros) as i64;
        self.base_time_millis.wrapping_add(micros / 1000)
    }

    /// The Random of one event: Java's `new Random(eventId)`, with the seed mixed in.
    fn random(&self, event_id: i64) -> JavaRandom {
        JavaRandom::new(event_id ^ self.seed_mask)
    }
}

/// The splitmix64 finalizer, to spread a user seed over all bits.
pub(crate) fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One event as the per-kind generators see it.
pub(crate) struct Event {
    /// Java's `eventId`: kind, ids and seed come from it.
    id: i64,
    /// Java's event number: the timestamp comes from it.
    number: i64,
    /// The event's timestamp, in milliseconds.
    timestamp_millis: i64,
}

/// Generates Nexmark events as Arrow batches; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct NexmarkGenerator {
    config: NexmarkConfig,
    params: Arc<Params>,
    next_event_id: u64,
    end_event_id: u64,
}

impl NexmarkGenerator {
    /// A generator at the start of the stream, `config.first_event_id`.
    pub fn new(config: NexmarkConfig) -> Result<Self> {
        let first = config.first_event_id;
        Self::resume(config, first)
    }

    /// A generator that continues a stream whose next event id was `next_event_id` (as returned
    /// by [`next_event_id`](Self::next_event_id) when it was checkpointed).
    pub fn resume(config: NexmarkConfig, next_event_id: u64) -> Result<Self> {
        config.validate()?;
        if next_event_id < config.first_event_id {
            return Err(Error::InvalidConfig(format!(
                "cannot resume at event {next_event_id}, before the first event {}",
                config.first_event_id
            )));
        }
        let end_event_id = config.end_event_id();
        let params = Arc::new(Params::new(&config));
        Ok(Self {
            next_event_id: next_event_id.min(end_event_id),
            end_event_id,
            config,
            params,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &NexmarkConfig {
        &self.config
    }

    /// The id of the next event to be generated; checkpoint it to [`resume`](Self::resume).
    pub fn next_event_id(&self) -> u64 {
        self.next_event_id
    }

    /// Whether every event of a bounded stream has been generated.
    pub fn is_exhausted(&self) -> bool {
        self.next_event_id >= self.end_event_id
    }

    /// The event time of an event, in microseconds since the epoch (whole milliseconds, as in
    /// Java), for a caller that paces the stream.
    pub fn event_timestamp_micros(&self, event_id: u64) -> i64 {
        let number = event_id.saturating_sub(self.config.first_event_id) as i64;
        self.params.timestamp_millis(number).wrapping_mul(1000)
    }

    /// Generates the next `events` events (fewer at the end of a bounded stream, and at most
    /// [`max_events_per_call`](Self::max_events_per_call)), one batch per table; `None` once
    /// the stream is exhausted.
    ///
    /// Events of every kind are consumed, so ids stay consistent; a caller that wants one table
    /// uses its batch (and can set [`NexmarkConfig::table`] to skip building the others).
    pub fn next_events(&mut self, events: usize) -> Result<Option<NexmarkBatches>> {
        if self.is_exhausted() {
            return Ok(None);
        }
        let start = self.next_event_id;
        let batches = self.generate(start..start.saturating_add(events as u64))?;
        self.next_event_id = batches.event_ids.end;
        Ok(Some(batches))
    }

    /// The most events one call generates: 1,048,576, or fewer where large average sizes would
    /// make the batches exceed about 1 GiB.
    pub fn max_events_per_call(&self) -> u64 {
        const MAX_EVENTS: u64 = 1 << 20;
        const MAX_BYTES: u64 = 1 << 30;
        let largest = self
            .config
            .avg_person_byte_size
            .max(self.config.avg_auction_byte_size)
            .max(self.config.avg_bid_byte_size)
            .max(1);
        (MAX_BYTES / u64::from(largest)).clamp(1, MAX_EVENTS)
    }

    /// Generates the events with the given ids, without moving the generator. Ids outside the
    /// stream are clipped to it, and at most [`max_events_per_call`](Self::max_events_per_call)
    /// are generated: the result's `event_ids` says which were.
    pub fn generate(&self, event_ids: Range<u64>) -> Result<NexmarkBatches> {
        let start = event_ids.start.max(self.config.first_event_id);
        let end = event_ids
            .end
            .min(self.end_event_id)
            .min(start.saturating_add(self.max_events_per_call()))
            .max(start);
        let counts = kind_counts(start, end);
        let wanted = |table: NexmarkTable| self.config.table.is_none_or(|only| only == table);
        let capacity = |table: NexmarkTable, count: u64| {
            if wanted(table) {
                count as usize
            } else {
                0
            }
        };
        let params = &*self.params;
        let mut person = PersonColumns::with_capacity(
            capacity(NexmarkTable::Person, counts[0]),
            params.avg_person_byte_size,
        );
        let mut auction = AuctionColumns::with_capacity(
            capacity(NexmarkTable::Auction, counts[1]),
            params.avg_auction_byte_size,
        );
        let mut bid = BidColumns::with_capacity(
            capacity(NexmarkTable::Bid, counts[2]),
            params.avg_bid_byte_size,
        );
        let first_event_id = self.config.first_event_id;
        let event = |event_id: u64| {
            let number = (event_id - first_event_id) as i64;
            Event {
                id: event_id as i64,
                number,
                timestamp_millis: params.timestamp_millis(number),
            }
        };
        // One table at a time: events are independent, and each pass keeps one table's
        // buffers hot.
        let of_kind = |table: NexmarkTable| {
            (start..end).filter(move |&id| wanted(table) && NexmarkTable::of_event(id) == table)
        };
        for event_id in of_kind(NexmarkTable::Person) {
            person.append(&event(event_id), params);
        }
        for event_id in of_kind(NexmarkTable::Auction) {
            auction.append(&event(event_id), params);
        }
        for event_id in of_kind(NexmarkTable::Bid) {
            bid.append(&event(event_id), params);
        }
        Ok(NexmarkBatches {
            event_ids: start..end,
            person: person.finish()?,
            auction: auction.finish()?,
            bid: bid.finish()?,
        })
    }
}

/// How many persons, auctions and bids the ids `start..end` produce.
fn kind_counts(start: u64, end: u64) -> [u64; 3] {
    let total = TOTAL_PROPORTION as u64;
    let full_cycles = (end - start) / total;
    let mut counts = [
        full_cycles * PERSON_PROPORTION as u64,
        full_cycles * AUCTION_PROPORTION as u64,
        full_cycles * BID_PROPORTION as u64,
    ];
    for event_id in start + full_cycles * total..end {
        let index = match NexmarkTable::of_event(event_id) {
            NexmarkTable::Person => 0,
            NexmarkTable::Auction => 1,
            NexmarkTable::Bid => 2,
        };
        counts[index] += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_counts_match_a_count_by_id() {
        for (start, end) in [(0, 0), (0, 1), (0, 50), (3, 1234), (49, 151)] {
            let mut expected = [0; 3];
            for id in start..end {
                expected[NexmarkTable::ALL
                    .iter()
                    .position(|&t| t == NexmarkTable::of_event(id))
                    .unwrap_or(0)] += 1;
            }
            assert_eq!(kind_counts(start, end), expected, "{start}..{end}");
        }
    }

    #[test]
    fn table_names_parse() {
        assert_eq!("Bid".parse::<NexmarkTable>().ok(), Some(NexmarkTable::Bid));
        assert_eq!(
            "PERSON".parse::<NexmarkTable>().ok(),
            Some(NexmarkTable::Person)
        );
        assert!("bids".parse::<NexmarkTable>().is_err());
    }
}
