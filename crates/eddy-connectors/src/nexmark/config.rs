//! [`NexmarkConfig`]: the generator's knobs, with the Java generator's defaults, and their
//! parsing from RisingWave-style `nexmark.*` options.

use std::collections::BTreeMap;
use std::str::FromStr;

use super::NexmarkTable;
use crate::error::{Error, Result};

/// Beam's fixed Nexmark base time, 2015-07-15T00:00:00Z, in milliseconds since the epoch. (The
/// Flink source uses the wall clock at start instead; a fixed time keeps runs reproducible.)
pub const DEFAULT_BASE_TIME_MILLIS: i64 = 1_436_918_400_000;

/// Largest accepted average event size, in bytes.
pub const MAX_AVG_BYTE_SIZE: u32 = 1 << 20;

/// How a [`NexmarkGenerator`](super::NexmarkGenerator) synthesizes events.
///
/// Defaults are those of the Java generator's `NexmarkConfiguration`; the person, auction and bid
/// proportions are fixed at 1:3:46.
#[derive(Debug, Clone, PartialEq)]
pub struct NexmarkConfig {
    /// Id of the first event. Event ids drive everything: the kind of an event, the ids it
    /// carries and the seed of its random values.
    pub first_event_id: u64,
    /// Number of events to generate; `None` is unbounded (capped, as in Java, so that no
    /// counter overflows).
    pub event_count: Option<u64>,
    /// Mixed into every event's seed; 0 reproduces the Java generator's values.
    pub seed: u64,
    /// Events per second of event time, which spaces the events' timestamps (Java's
    /// `firstEventRate`).
    pub first_event_rate: u64,
    /// Event-time gap between consecutive events, in nanoseconds; when set it replaces the gap
    /// derived from [`first_event_rate`](Self::first_event_rate).
    pub inter_event_delay_nanos: Option<u64>,
    /// Timestamp of the first event, in milliseconds since the epoch.
    pub base_time_millis: i64,
    /// One in this many bids goes to a random in-flight auction; the others go to the current
    /// hot auction.
    pub hot_auction_ratio: u32,
    /// One in this many bids comes from a random active person; the others from the current hot
    /// bidder.
    pub hot_bidder_ratio: u32,
    /// One in this many auctions is by a random active person; the others by the current hot
    /// seller.
    pub hot_seller_ratio: u32,
    /// Number of most recent people from whom random bidders and sellers are drawn.
    pub active_people: u32,
    /// Number of most recent auctions from which random bids pick their auction; also sets how
    /// long auctions run.
    pub in_flight_auctions: u32,
    /// Average size of a person event in bytes, reached by padding `extra`.
    pub avg_person_byte_size: u32,
    /// Average size of an auction event in bytes, reached by padding `extra`.
    pub avg_auction_byte_size: u32,
    /// Average size of a bid event in bytes, reached by padding `extra`.
    pub avg_bid_byte_size: u32,
    /// Suggested number of events per [`next_events`](super::NexmarkGenerator::next_events)
    /// call, for the caller (RisingWave's `nexmark.max.chunk.size`).
    pub max_chunk_size: usize,
    /// Build rows of this table only; the other tables' batches stay empty. Ids are unaffected,
    /// since every event is derived from its id alone.
    pub table: Option<NexmarkTable>,
}

impl Default for NexmarkConfig {
    fn default() -> Self {
        Self {
            first_event_id: 0,
            event_count: None,
            seed: 0,
            first_event_rate: 10_000,
            inter_event_delay_nanos: None,
            base_time_millis: DEFAULT_BASE_TIME_MILLIS,
            hot_auction_ratio: 2,
            hot_bidder_ratio: 4,
            hot_seller_ratio: 4,
            active_people: 1000,
            in_flight_auctions: 100,
            avg_person_byte_size: 200,
            avg_auction_byte_size: 500,
            avg_bid_byte_size: 100,
            max_chunk_size: 1024,
            table: None,
        }
    }
}

/// The option keys [`NexmarkConfig::from_options`] understands.
pub const OPTION_KEYS: &[&str] = &[
    "nexmark.event.num",
    "nexmark.first.event.id",
    "nexmark.seed",
    "nexmark.first.event.rate",
    "nexmark.min.event.gap.in.ns",
    "nexmark.base.time",
    "nexmark.hot.auction.ratio",
    "nexmark.hot.bidder.ratio",
    "nexmark.hot.seller.ratio",
    "nexmark.active.people",
    "nexmark.in.flight.auctions",
    "nexmark.avg.person.byte.size",
    "nexmark.avg.auction.byte.size",
    "nexmark.avg.bid.byte.size",
    "nexmark.max.chunk.size",
    "nexmark.table.type",
];

impl NexmarkConfig {
    /// Parses RisingWave-style options over the defaults.
    ///
    /// Keys outside `nexmark.*` are ignored (they belong to the caller, e.g. `connector`); an
    /// unknown `nexmark.*` key or a value that does not parse is an error naming it.
    ///
    /// - `nexmark.event.num`: events to generate; negative (RisingWave's default, -1) is
    ///   unbounded.
    /// - `nexmark.first.event.id`, `nexmark.seed`.
    /// - `nexmark.first.event.rate`: events per second of event time.
    /// - `nexmark.min.event.gap.in.ns`: event-time gap between events; overrides the rate.
    /// - `nexmark.base.time`: timestamp of the first event, in milliseconds since the epoch.
    /// - `nexmark.hot.auction.ratio`, `nexmark.hot.bidder.ratio`, `nexmark.hot.seller.ratio`,
    ///   `nexmark.active.people`, `nexmark.in.flight.auctions`.
    /// - `nexmark.avg.person.byte.size`, `nexmark.avg.auction.byte.size`,
    ///   `nexmark.avg.bid.byte.size`.
    /// - `nexmark.max.chunk.size`: events per call, for the caller.
    /// - `nexmark.table.type`: `person`, `auction` or `bid` (any case).
    pub fn from_options(options: &BTreeMap<String, String>) -> Result<Self> {
        let mut config = Self::default();
        for (key, value) in options {
            if !key.starts_with("nexmark.") {
                continue;
            }
            let value = value.trim();
            match key.as_str() {
                "nexmark.event.num" => {
                    let events: i64 = parse(key, value)?;
                    config.event_count = u64::try_from(events).ok();
                }
                "nexmark.first.event.id" => config.first_event_id = parse(key, value)?,
                "nexmark.seed" => config.seed = parse(key, value)?,
                "nexmark.first.event.rate" => {
                    config.first_event_rate = parse(key, value)?;
                }
                "nexmark.min.event.gap.in.ns" => {
                    config.inter_event_delay_nanos = Some(parse(key, value)?);
                }
                "nexmark.base.time" => config.base_time_millis = parse(key, value)?,
                "nexmark.hot.auction.ratio" => config.hot_auction_ratio = parse(key, value)?,
                "nexmark.hot.bidder.ratio" => config.hot_bidder_ratio = parse(key, value)?,
                "nexmark.hot.seller.ratio" => config.hot_seller_ratio = parse(key, value)?,
                "nexmark.active.people" => config.active_people = parse(key, value)?,
                "nexmark.in.flight.auctions" => config.in_flight_auctions = parse(key, value)?,
                "nexmark.avg.person.byte.size" => {
                    config.avg_person_byte_size = parse(key, value)?;
                }
                "nexmark.avg.auction.byte.size" => {
                    config.avg_auction_byte_size = parse(key, value)?;
                }
                "nexmark.avg.bid.byte.size" => config.avg_bid_byte_size = parse(key, value)?,
                "nexmark.max.chunk.size" => config.max_chunk_size = parse(key, value)?,
                "nexmark.table.type" => {
                    config.table = Some(value.parse().map_err(|_| {
                        Error::invalid_option(key, value, "expected person, auction or bid")
                    })?);
                }
                _ => return Err(Error::UnknownOption { key: key.clone() }),
            }
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks that the configuration can drive the Java logic: ratios are at least 1, counts fit
    /// Java's `int`, sizes are at most [`MAX_AVG_BYTE_SIZE`], the rate is positive and ids stay
    /// within Java's `long`.
    pub fn validate(&self) -> Result<()> {
        let at_least_one = [
            ("nexmark.hot.auction.ratio", self.hot_auction_ratio),
            ("nexmark.hot.bidder.ratio", self.hot_bidder_ratio),
            ("nexmark.hot.seller.ratio", self.hot_seller_ratio),
        ];
        for (key, value) in at_least_one {
            if value == 0 {
                return Err(Error::invalid_option(key, "0", "must be at least 1"));
            }
        }
        let java_ints = [
            ("nexmark.hot.auction.ratio", self.hot_auction_ratio),
            ("nexmark.hot.bidder.ratio", self.hot_bidder_ratio),
            ("nexmark.hot.seller.ratio", self.hot_seller_ratio),
            ("nexmark.active.people", self.active_people),
            ("nexmark.in.flight.auctions", self.in_flight_auctions),
        ];
        for (key, value) in java_ints {
            if i32::try_from(value).is_err() {
                return Err(Error::invalid_option(
                    key,
                    value.to_string(),
                    "must be at most 2147483647",
                ));
            }
        }
        // Java allows any int; a cap keeps one row's `extra` far from Arrow's 2 GiB.
        let sizes = [
            ("nexmark.avg.person.byte.size", self.avg_person_byte_size),
            ("nexmark.avg.auction.byte.size", self.avg_auction_byte_size),
            ("nexmark.avg.bid.byte.size", self.avg_bid_byte_size),
        ];
        for (key, value) in sizes {
            if value > MAX_AVG_BYTE_SIZE {
                return Err(Error::invalid_option(
                    key,
                    value.to_string(),
                    format!("must be at most {MAX_AVG_BYTE_SIZE}"),
                ));
            }
        }
        if self.inter_event_delay_nanos.is_none() && self.first_event_rate == 0 {
            return Err(Error::invalid_option(
                "nexmark.first.event.rate",
                "0",
                "must be at least 1",
            ));
        }
        if self.base_time_millis.checked_mul(1000).is_none() {
            return Err(Error::invalid_option(
                "nexmark.base.time",
                self.base_time_millis.to_string(),
                "is out of range for a timestamp",
            ));
        }
        if self.max_chunk_size == 0 {
            return Err(Error::invalid_option(
                "nexmark.max.chunk.size",
                "0",
                "must be at least 1",
            ));
        }
        let limit = self.max_events();
        if self.first_event_id > limit {
            return Err(Error::invalid_option(
                "nexmark.first.event.id",
                self.first_event_id.to_string(),
                format!("must be at most {limit}"),
            ));
        }
        if let Some(count) = self.event_count {
            if count > limit - self.first_event_id {
                return Err(Error::invalid_option(
                    "nexmark.event.num",
                    count.to_string(),
                    format!("must be at most {}", limit - self.first_event_id),
                ));
            }
        }
        Ok(())
    }

    /// Event-time gap between consecutive events, in microseconds (Java's
    /// `interEventDelayUs`).
    pub fn inter_event_delay_micros(&self) -> f64 {
        match self.inter_event_delay_nanos {
            Some(nanos) => nanos as f64 / 1000.0,
            None => 1_000_000.0 / self.first_event_rate as f64,
        }
    }

    /// The most events a stream may have, as Java's `GeneratorConfig` caps an unbounded one:
    /// `Long.MAX_VALUE / (totalProportion * max(average sizes))`.
    pub(crate) fn max_events(&self) -> u64 {
        let largest = self
            .avg_person_byte_size
            .max(self.avg_auction_byte_size)
            .max(self.avg_bid_byte_size)
            .max(1);
        i64::MAX as u64 / (super::TOTAL_PROPORTION as u64 * u64::from(largest))
    }

    /// One past the id of the last event of the stream.
    pub(crate) fn end_event_id(&self) -> u64 {
        let limit = self.max_events();
        match self.event_count {
            Some(count) => self.first_event_id.saturating_add(count).min(limit),
            None => limit,
        }
    }
}

fn parse<T: FromStr>(key: &str, value: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    value
        .parse()
        .map_err(|error: T::Err| Error::invalid_option(key, value, error.to_string()))
}
