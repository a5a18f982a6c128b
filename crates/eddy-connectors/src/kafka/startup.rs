//! Where a Kafka reader starts: the topic's partitions and watermarks, and
//! the offsets `scan.startup.mode` picks in them, looked up when a reader
//! finds new partitions or, for `latest` and timestamp modes, while the
//! `CREATE` that starts it runs.

use std::collections::BTreeMap;

use rdkafka::consumer::Consumer;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::options::{KafkaOptions, Startup};
use super::{kafka_error, REQUEST_TIMEOUT};
use crate::spec::SourceSpec;
use crate::{Error, Result};

/// Every partition of `topic` with its low and high watermark. Blocking.
pub(super) fn watermarks(consumer: &impl Consumer, topic: &str) -> Result<Vec<(i32, i64, i64)>> {
    let metadata = consumer
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .map_err(kafka_error)?;
    let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Err(Error::Source(format!("topic \"{topic}\" does not exist")));
    };
    if let Some(error) = found.error() {
        return Err(Error::Source(format!("topic \"{topic}\": {error:?}")));
    }
    let mut watermarks = Vec::new();
    for partition in found.partitions() {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition.id(), REQUEST_TIMEOUT)
            .map_err(kafka_error)?;
        watermarks.push((partition.id(), low, high));
    }
    Ok(watermarks)
}

/// Where each of `partitions` (id, low and high watermark) of `topic`
/// starts under `startup`. Blocking.
pub(super) fn start_offsets(
    consumer: &impl Consumer,
    topic: &str,
    startup: Startup,
    partitions: &[(i32, i64, i64)],
) -> Result<Vec<(i32, i64)>> {
    let mut starts = Vec::new();
    let mut by_time = TopicPartitionList::new();
    for (partition, low, high) in partitions {
        match startup {
            Startup::Earliest => starts.push((*partition, *low)),
            Startup::Latest => starts.push((*partition, *high)),
            Startup::Timestamp(ms) => by_time
                .add_partition_offset(topic, *partition, Offset::Offset(ms))
                .map_err(kafka_error)?,
        }
    }
    if by_time.count() > 0 {
        let found = consumer
            .offsets_for_times(by_time, REQUEST_TIMEOUT)
            .map_err(kafka_error)?;
        for element in found.elements() {
            let high = partitions
                .iter()
                .find(|(p, _, _)| *p == element.partition())
                .map_or(0, |(_, _, h)| *h);
            let start = match element.offset() {
                Offset::Offset(offset) => offset,
                _ => high,
            };
            starts.push((element.partition(), start));
        }
    }
    Ok(starts)
}

/// Where a reader of `spec` starting now begins, as the last offset taken
/// of each partition (one before the first it reads), for `latest` and
/// timestamp startup modes: resolved when the view is created, so that it
/// reads exactly what comes after, and so that the positions can be stored
/// before anything is read. `None` for `earliest`. Blocking.
pub(crate) fn start_positions(spec: &SourceSpec) -> Result<Option<BTreeMap<String, i64>>> {
    let options = KafkaOptions::parse(spec)?;
    if let Startup::Earliest = options.startup {
        return Ok(None);
    }
    let mut config = ClientConfig::new();
    config.set("enable.auto.commit", "false");
    for (key, value) in &options.client {
        config.set(key, value);
    }
    let consumer: rdkafka::consumer::BaseConsumer = config.create().map_err(kafka_error)?;
    let partitions = watermarks(&consumer, &options.topic)?;
    let starts = start_offsets(&consumer, &options.topic, options.startup, &partitions)?;
    Ok(Some(
        starts
            .into_iter()
            .map(|(partition, start)| (partition.to_string(), start - 1))
            .collect(),
    ))
}
