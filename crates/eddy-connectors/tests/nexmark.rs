//! The Nexmark generator against the Java reference and against the invariants of the Nexmark
//! model: kinds in a fixed 1:3:46 proportion, ids that count events, references that stay near
//! the newest persons and auctions, hot ratios, timestamps, determinism and resumption.

// Helpers panic on a malformed batch: that is a test failure.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use arrow::array::{Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use eddy_connectors::nexmark::{
    schema, NexmarkConfig, NexmarkGenerator, NexmarkTable, DEFAULT_BASE_TIME_MILLIS,
};
use eddy_connectors::Error;

fn int(batch: &RecordBatch, column: &str) -> Vec<i64> {
    let array = batch.column_by_name(column).unwrap();
    let array = array.as_any().downcast_ref::<Int64Array>().unwrap();
    array.values().to_vec()
}

fn string(batch: &RecordBatch, column: &str) -> Vec<String> {
    let array = batch.column_by_name(column).unwrap();
    let array = array.as_any().downcast_ref::<StringArray>().unwrap();
    array.iter().map(|v| v.unwrap().to_string()).collect()
}

fn time(batch: &RecordBatch, column: &str) -> Vec<i64> {
    let array = batch.column_by_name(column).unwrap();
    let array = array
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .unwrap();
    array.values().to_vec()
}

fn bounded(first_event_id: u64, events: u64) -> NexmarkConfig {
    NexmarkConfig {
        first_event_id,
        event_count: Some(events),
        ..NexmarkConfig::default()
    }
}

fn all_events(config: NexmarkConfig) -> eddy_connectors::NexmarkBatches {
    let generator = NexmarkGenerator::new(config).unwrap();
    let end = generator.config().first_event_id + generator.config().event_count.unwrap();
    generator.generate(generator.next_event_id()..end).unwrap()
}

/// Renders events in event-id order as the Java reference harness prints them: one
/// tab-separated line per event, `P`/`A`/`B` first, times in milliseconds.
fn render_like_java(first_event_id: u64, events: u64) -> String {
    let batches = all_events(bounded(first_event_id, events));
    let person = &batches.person;
    let auction = &batches.auction;
    let bid = &batches.bid;
    let (p_id, p_name, p_email, p_card, p_city, p_state, p_time, p_extra) = (
        int(person, "id"),
        string(person, "name"),
        string(person, "email_address"),
        string(person, "credit_card"),
        string(person, "city"),
        string(person, "state"),
        time(person, "date_time"),
        string(person, "extra"),
    );
    let (a_id, a_item, a_desc, a_initial, a_reserve, a_time, a_expires, a_seller, a_category) = (
        int(auction, "id"),
        string(auction, "item_name"),
        string(auction, "description"),
        int(auction, "initial_bid"),
        int(auction, "reserve"),
        time(auction, "date_time"),
        time(auction, "expires"),
        int(auction, "seller"),
        int(auction, "category"),
    );
    let a_extra = string(auction, "extra");
    let (b_auction, b_bidder, b_price, b_channel, b_url, b_time, b_extra) = (
        int(bid, "auction"),
        int(bid, "bidder"),
        int(bid, "price"),
        string(bid, "channel"),
        string(bid, "url"),
        time(bid, "date_time"),
        string(bid, "extra"),
    );
    let (mut p, mut a, mut b) = (0, 0, 0);
    let mut out = String::new();
    for event_id in first_event_id..first_event_id + events {
        let line = match NexmarkTable::of_event(event_id) {
            NexmarkTable::Person => {
                p += 1;
                let i = p - 1;
                format!(
                    "P\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    p_id[i],
                    p_name[i],
                    p_email[i],
                    p_card[i],
                    p_city[i],
                    p_state[i],
                    p_time[i] / 1000,
                    p_extra[i]
                )
            }
            NexmarkTable::Auction => {
                a += 1;
                let i = a - 1;
                format!(
                    "A\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    a_id[i],
                    a_item[i],
                    a_desc[i],
                    a_initial[i],
                    a_reserve[i],
                    a_time[i] / 1000,
                    a_expires[i] / 1000,
                    a_seller[i],
                    a_category[i],
                    a_extra[i]
                )
            }
            NexmarkTable::Bid => {
                b += 1;
                let i = b - 1;
                format!(
                    "B\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    b_auction[i],
                    b_bidder[i],
                    b_price[i],
                    b_channel[i],
                    b_url[i],
                    b_time[i] / 1000,
                    b_extra[i]
                )
            }
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

// Expected values come from the Java generator: nexmark-flink's model generators as of
// nexmark/nexmark d055687 (unchanged until efed4d6 moved them to `SplittableRandom`), each
// event driven by `new Random(eventId)` as the first `NexmarkGenerator` (558d931) did, channel
// urls drawn from `new Random(0x6E65786D61726BL)`, base time 2015-07-15T00:00:00Z, default
// configuration. The harness subtracted the `FIRST_PERSON_ID` that Java adds to bidders twice.
#[test]
fn matches_the_java_generator() {
    let text = render_like_java(0, 10_000);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "P\t1000\tPeter Jones\tnhd@xcat.com\t7241 7320 9143 4888\tPortland\tWY\t1436918400000\t\
         WN_HS_bnpkkiwhwana_L^`KZjdgsid`K]MLU[aaOH`ztxbulvlxtkn_ZZ^T\\mqgdjzvlkymsmfrhkfVYSXK_OY[aVYVKa\\\
         X^]RO]OYguwiduWJNQLLaMLHOTaHY_J[YKWaUOSJN_VHWXZ]`SgbnjqeVVQ\\[["
    );
    assert!(lines[1].starts_with(
        "A\t1000\twkx mgee\teszpqxtdxrvwmmywkmogoahf\t28873\t29448\t1436918400000\t1436918400011\t1000\t13\t\
         zcurskufssowmihzpmZHWQM^"
    ));
    assert_eq!(
        lines[4],
        "B\t1000\t1001\t32530001\tGoogle\thttps://www.nexmark.com/izv/xmxz/pnwo/item.htm?query=1\t\
         1436918400000\tsbolvyqwgticfdrwdyiyofziYMU\\Z`UaTQO][NX\\RM]WPYTOuwogvszlx"
    );
    assert_eq!(
        lines[7],
        "B\t1000\t1001\t3126206\tchannel-6254\t\
         https://www.nexmark.com/_ez/pscn/g_i/item.htm?query=1&channel_id=1981284352\t1436918400000\t\
         KUUY`RJaVNU`^QIWNHgdvnfxZQ]H_PbustqrpqasinNX`Q[_YKKNP\\woaecePJPO[X"
    );
    assert_eq!(
        fnv1a(text.as_bytes()),
        0xad28_7b5c_5389_c02a,
        "first 10,000 events"
    );

    let text = render_like_java(123_456_789, 5_000);
    assert!(text.starts_with(
        "B\t7408400\t2470101\t55171\tchannel-7554\t\
         https://www.nexmark.com/ghtn/loq/lrqu/item.htm?query=1&channel_id=1102577664\t1436918400000\t"
    ));
    assert_eq!(
        fnv1a(text.as_bytes()),
        0xf64e_2635_01d1_3752,
        "5,000 events from 123456789"
    );
}

#[test]
fn proportions_are_exactly_1_3_46_per_50_events() {
    let mut generator = NexmarkGenerator::new(bounded(0, 50 * 40)).unwrap();
    while let Some(batches) = generator.next_events(50).unwrap() {
        assert_eq!(batches.event_ids.end - batches.event_ids.start, 50);
        assert_eq!(batches.person.num_rows(), 1);
        assert_eq!(batches.auction.num_rows(), 3);
        assert_eq!(batches.bid.num_rows(), 46);
    }
    // Any 50 consecutive ids hold one cycle, wherever they start.
    let generator = NexmarkGenerator::new(NexmarkConfig::default()).unwrap();
    let batches = generator.generate(17..67).unwrap();
    let rows = [&batches.person, &batches.auction, &batches.bid].map(RecordBatch::num_rows);
    assert_eq!(rows, [1, 3, 46]);
}

#[test]
fn ids_count_events_and_references_stay_near_the_newest() {
    let events = 200_000;
    let batches = all_events(bounded(0, events));
    let persons = int(&batches.person, "id");
    let auctions = int(&batches.auction, "id");
    assert_eq!(
        persons,
        (1000..1000 + persons.len() as i64).collect::<Vec<_>>()
    );
    assert_eq!(
        auctions,
        (1000..1000 + auctions.len() as i64).collect::<Vec<_>>()
    );

    // Walk the events in id order, tracking the newest person and auction.
    let (sellers, bid_auctions, bidders) = (
        int(&batches.auction, "seller"),
        int(&batches.bid, "auction"),
        int(&batches.bid, "bidder"),
    );
    let (mut newest_person, mut newest_auction) = (999, 999);
    let (mut a, mut b) = (0, 0);
    let (mut existing_auction, mut existing_bidder) = (0, 0);
    for event_id in 0..events {
        match NexmarkTable::of_event(event_id) {
            NexmarkTable::Person => newest_person += 1,
            NexmarkTable::Auction => {
                newest_auction += 1;
                let seller = sellers[a];
                assert!(
                    (1000..=newest_person + 10).contains(&seller),
                    "seller {seller}"
                );
                assert!(
                    seller >= newest_person - 1000,
                    "seller {seller} is not active"
                );
                a += 1;
            }
            NexmarkTable::Bid => {
                let (auction, bidder) = (bid_auctions[b], bidders[b]);
                // Up to 10 ids ahead of the newest, as Java's AUCTION_ID_LEAD and
                // PERSON_ID_LEAD allow; never older than the in-flight window or a hot block.
                assert!(auction <= newest_auction + 10, "auction {auction}");
                assert!(auction >= (newest_auction - 100).min(newest_auction / 100 * 100));
                assert!(bidder <= newest_person + 10, "bidder {bidder}");
                assert!(bidder >= 1000);
                existing_auction += usize::from(auction <= newest_auction);
                existing_bidder += usize::from(bidder <= newest_person);
                b += 1;
            }
        }
    }
    // Most references are to persons and auctions that already exist.
    assert!(existing_auction * 100 > b * 93, "{existing_auction} of {b}");
    assert!(existing_bidder * 100 > b * 90, "{existing_bidder} of {b}");
}

#[test]
fn hot_ratios_are_roughly_as_configured() {
    let hot_share = |config: NexmarkConfig| {
        let batches = all_events(config);
        let auctions = int(&batches.bid, "auction");
        let bidders = int(&batches.bid, "bidder");
        let hot_auctions = auctions.iter().filter(|&&a| (a - 1000) % 100 == 0).count();
        let hot_bidders = bidders.iter().filter(|&&b| (b - 1000) % 100 == 1).count();
        let sellers = int(&batches.auction, "seller");
        let hot_sellers = sellers.iter().filter(|&&s| (s - 1000) % 100 == 0).count();
        (
            hot_auctions as f64 / auctions.len() as f64,
            hot_bidders as f64 / bidders.len() as f64,
            hot_sellers as f64 / sellers.len() as f64,
        )
    };
    // Defaults: 1/2 of the bids at a random auction, 1/4 by a random bidder, 1/4 of the
    // auctions by a random seller; a random pick rarely lands on the hot one.
    let (auction, bidder, seller) = hot_share(bounded(0, 500_000));
    assert!((0.49..0.53).contains(&auction), "hot auctions {auction}");
    assert!((0.74..0.77).contains(&bidder), "hot bidders {bidder}");
    assert!((0.73..0.78).contains(&seller), "hot sellers {seller}");

    let config = NexmarkConfig {
        hot_auction_ratio: 10,
        hot_bidder_ratio: 1,
        hot_seller_ratio: 1,
        ..bounded(0, 500_000)
    };
    let (auction, bidder, seller) = hot_share(config);
    assert!((0.89..0.92).contains(&auction), "hot auctions {auction}");
    assert!(bidder < 0.02, "hot bidders {bidder}");
    assert!(seller < 0.02, "hot sellers {seller}");
}

#[test]
fn timestamps_follow_the_event_rate() {
    let batches = all_events(bounded(0, 100_000));
    let base = DEFAULT_BASE_TIME_MILLIS * 1000;
    let bids = time(&batches.bid, "date_time");
    assert!(bids.windows(2).all(|w| w[0] <= w[1]));
    // 10,000 events per second: the 100,000th event is 10 s in, to the millisecond.
    assert_eq!(*bids.first().unwrap(), base);
    assert_eq!(*bids.last().unwrap(), base + 9_999_900 / 1000 * 1000);
    let (created, expires) = (
        time(&batches.auction, "date_time"),
        time(&batches.auction, "expires"),
    );
    assert!(created.iter().zip(&expires).all(|(c, e)| e > c));

    let generator = NexmarkGenerator::new(NexmarkConfig::default()).unwrap();
    assert_eq!(generator.event_timestamp_micros(0), base);
    assert_eq!(generator.event_timestamp_micros(12_345), base + 1_234_000);

    // A 1 ms gap: every event its own millisecond.
    let config = NexmarkConfig {
        inter_event_delay_nanos: Some(1_000_000),
        base_time_millis: 0,
        ..bounded(100, 50)
    };
    let generator = NexmarkGenerator::new(config.clone()).unwrap();
    assert_eq!(generator.event_timestamp_micros(149), 49_000);
    let batches = all_events(config);
    assert_eq!(time(&batches.person, "date_time"), vec![0]);
    assert_eq!(time(&batches.bid, "date_time").last(), Some(&49_000));
}

#[test]
fn same_config_same_batches_and_the_seed_changes_values_not_ids() {
    let first = all_events(bounded(0, 20_000));
    let again = all_events(bounded(0, 20_000));
    for table in NexmarkTable::ALL {
        assert_eq!(first.table(table), again.table(table), "{table}");
    }

    let seeded = all_events(NexmarkConfig {
        seed: 7,
        ..bounded(0, 20_000)
    });
    assert_eq!(int(&first.person, "id"), int(&seeded.person, "id"));
    assert_eq!(int(&first.auction, "id"), int(&seeded.auction, "id"));
    assert_eq!(first.bid.num_rows(), seeded.bid.num_rows());
    assert_ne!(
        string(&first.person, "name"),
        string(&seeded.person, "name")
    );
    assert_ne!(int(&first.bid, "price"), int(&seeded.bid, "price"));
    assert_ne!(string(&first.bid, "url"), string(&seeded.bid, "url"));
    let other = all_events(NexmarkConfig {
        seed: 8,
        ..bounded(0, 20_000)
    });
    assert_ne!(int(&seeded.bid, "price"), int(&other.bid, "price"));
}

#[test]
fn batches_do_not_depend_on_how_the_stream_is_cut_and_resume_continues_it() {
    let whole = all_events(bounded(0, 12_345));
    let mut generator = NexmarkGenerator::new(bounded(0, 12_345)).unwrap();
    let mut checkpoint = None;
    let mut bids = Vec::new();
    let mut calls = 0;
    while let Some(batches) = generator.next_events(997).unwrap() {
        bids.push(batches.bid);
        calls += 1;
        if calls == 5 {
            checkpoint = Some(generator.next_event_id());
            break;
        }
    }
    let checkpoint = checkpoint.unwrap();
    assert_eq!(checkpoint, 5 * 997);
    let mut resumed = NexmarkGenerator::resume(bounded(0, 12_345), checkpoint).unwrap();
    while let Some(batches) = resumed.next_events(4096).unwrap() {
        bids.push(batches.bid);
    }
    assert!(resumed.is_exhausted());
    assert_eq!(resumed.next_event_id(), 12_345);
    assert!(resumed.next_events(10).unwrap().is_none());
    let pieces = arrow::compute::concat_batches(&schema(NexmarkTable::Bid), &bids).unwrap();
    assert_eq!(pieces, whole.bid);

    // A later first event id is a later part of the same stream, but with its own times.
    let tail = all_events(bounded(5_000, 100));
    let from_start = NexmarkGenerator::new(bounded(0, 5_100))
        .unwrap()
        .generate(5_000..5_100)
        .unwrap();
    assert_eq!(int(&tail.bid, "price"), int(&from_start.bid, "price"));
    assert_eq!(int(&tail.bid, "auction"), int(&from_start.bid, "auction"));
}

#[test]
fn one_table_only_builds_the_same_rows() {
    let all = all_events(bounded(0, 5_000));
    for table in NexmarkTable::ALL {
        let only = all_events(NexmarkConfig {
            table: Some(table),
            ..bounded(0, 5_000)
        });
        assert_eq!(only.table(table), all.table(table), "{table}");
        for other in NexmarkTable::ALL.into_iter().filter(|&t| t != table) {
            assert_eq!(only.table(other).num_rows(), 0);
            assert_eq!(only.table(other).schema(), schema(other));
        }
    }
}

#[test]
fn bounded_streams_end_and_short_calls_are_allowed() {
    let mut generator = NexmarkGenerator::new(bounded(10, 120)).unwrap();
    let first = generator.next_events(100).unwrap().unwrap();
    assert_eq!(first.event_ids, 10..110);
    let empty = generator.next_events(0).unwrap().unwrap();
    assert_eq!(empty.event_ids, 110..110);
    let last = generator.next_events(100).unwrap().unwrap();
    assert_eq!(last.event_ids, 110..130);
    assert!(generator.next_events(100).unwrap().is_none());
    assert!(matches!(
        NexmarkGenerator::resume(bounded(10, 120), 9),
        Err(Error::InvalidConfig(_))
    ));
}

fn options(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn options_parse_risingwave_names() {
    let config = NexmarkConfig::from_options(&options(&[
        ("connector", "nexmark"),
        ("nexmark.event.num", "1000"),
        ("nexmark.seed", "42"),
        ("nexmark.min.event.gap.in.ns", "500"),
        ("nexmark.base.time", "0"),
        ("nexmark.first.event.rate", "5000"),
        ("nexmark.hot.auction.ratio", "3"),
        ("nexmark.hot.bidder.ratio", "5"),
        ("nexmark.hot.seller.ratio", "6"),
        ("nexmark.active.people", "77"),
        ("nexmark.in.flight.auctions", "88"),
        ("nexmark.max.chunk.size", "256"),
        ("nexmark.table.type", "Bid"),
    ]))
    .unwrap();
    let expected = NexmarkConfig {
        event_count: Some(1000),
        seed: 42,
        inter_event_delay_nanos: Some(500),
        base_time_millis: 0,
        first_event_rate: 5000,
        hot_auction_ratio: 3,
        hot_bidder_ratio: 5,
        hot_seller_ratio: 6,
        active_people: 77,
        in_flight_auctions: 88,
        max_chunk_size: 256,
        table: Some(NexmarkTable::Bid),
        ..NexmarkConfig::default()
    };
    assert_eq!(config, expected);
    // The gap wins over the rate.
    assert_eq!(config.inter_event_delay_micros(), 0.5);

    let unbounded = NexmarkConfig::from_options(&options(&[("nexmark.event.num", "-1")])).unwrap();
    assert_eq!(unbounded.event_count, None);
    assert_eq!(
        NexmarkConfig::from_options(&BTreeMap::new()).unwrap(),
        NexmarkConfig::default()
    );
}

#[test]
fn bad_options_are_errors_naming_them() {
    let error = |pairs: &[(&str, &str)]| {
        NexmarkConfig::from_options(&options(pairs))
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        error(&[("nexmark.split.num", "4")]),
        "unrecognized option \"nexmark.split.num\""
    );
    let message = error(&[("nexmark.seed", "forty-two")]);
    assert!(message.starts_with("invalid value for option \"nexmark.seed\": \"forty-two\""));
    let message = error(&[("nexmark.hot.auction.ratio", "0")]);
    assert!(
        message.contains("\"nexmark.hot.auction.ratio\""),
        "{message}"
    );
    assert!(message.contains("at least 1"), "{message}");
    let message = error(&[("nexmark.table.type", "bids")]);
    assert!(
        message.contains("\"nexmark.table.type\": \"bids\""),
        "{message}"
    );
    let message = error(&[("nexmark.first.event.rate", "0")]);
    assert!(message.contains("nexmark.first.event.rate"), "{message}");
    let message = error(&[("nexmark.active.people", "3000000000")]);
    assert!(message.contains("nexmark.active.people"), "{message}");

    let error = NexmarkConfig::from_options(&options(&[("nexmark.foo", "1")])).unwrap_err();
    assert_eq!(error.sqlstate(), "22023");
}

#[test]
fn large_average_sizes_make_smaller_calls() {
    let config = NexmarkConfig {
        avg_auction_byte_size: 1 << 20,
        ..bounded(0, 5_000)
    };
    let mut generator = NexmarkGenerator::new(config).unwrap();
    assert_eq!(generator.max_events_per_call(), 1024);
    let batches = generator.next_events(5_000).unwrap().unwrap();
    assert_eq!(batches.event_ids, 0..1024);
    let extra = string(&batches.auction, "extra");
    let mean = extra.iter().map(String::len).sum::<usize>() / extra.len();
    assert!((1_000_000..1_100_000).contains(&mean), "{mean}");
    assert_eq!(
        NexmarkGenerator::new(NexmarkConfig::default())
            .unwrap()
            .max_events_per_call(),
        1 << 20
    );
}
