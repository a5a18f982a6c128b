//! Bid events (Java's `BidGenerator`), with their channels and urls.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Builder, RecordBatch, TimestampMicrosecondBuilder};

use super::auction::{last_base0_auction_id, next_base0_auction_id};
use super::java_random::JavaRandom;
use super::person::{last_base0_person_id, next_base0_person_id};
use super::strings::{next_extra, next_price, next_string};
use super::{Event, NexmarkTable, Params, FIRST_AUCTION_ID, FIRST_PERSON_ID};
use crate::error::Result;
use crate::string_column::StringColumn;

/// Hot auctions are the first of each block of this many (Java's `HOT_AUCTION_RATIO`).
const HOT_AUCTION_BLOCK: i64 = 100;

/// Hot bidders are the second person of each block of this many (Java's `HOT_BIDDER_RATIO`).
const HOT_BIDDER_BLOCK: i64 = 100;

/// One in this many bids comes from a random channel, the others from a hot one.
const HOT_CHANNELS_RATIO: i32 = 2;

/// Number of non-hot channels.
const CHANNELS_NUMBER: i32 = 10_000;

const HOT_CHANNELS: [&str; 4] = ["Google", "Facebook", "Baidu", "Apple"];

/// Seeds the Random that makes the channel urls.
const URL_SEED: i64 = 0x6E_6578_6D61_726B;

/// The hot channels' urls and the other channels' names and urls. Java draws them from an
/// unseeded Random once per process; here one Random seeded from [`URL_SEED`] and the
/// generator's seed draws, in Java's order, the four hot urls and then each channel's url.
#[derive(Debug)]
pub(crate) struct ChannelTable {
    hot_urls: [String; 4],
    names: Vec<String>,
    urls: Vec<String>,
}

impl ChannelTable {
    pub(crate) fn new(seed_mask: i64) -> Self {
        let mut random = JavaRandom::new(URL_SEED ^ seed_mask);
        let hot_urls = std::array::from_fn(|_| base_url(&mut random));
        let mut names = Vec::with_capacity(CHANNELS_NUMBER as usize);
        let mut urls = Vec::with_capacity(CHANNELS_NUMBER as usize);
        for i in 0..CHANNELS_NUMBER {
            let mut url = base_url(&mut random);
            if random.next_int_bounded(10) > 0 {
                url.push_str("&channel_id=");
                url.push_str(&i.reverse_bits().wrapping_abs().to_string());
            }
            names.push(format!("channel-{i}"));
            urls.push(url);
        }
        Self {
            hot_urls,
            names,
            urls,
        }
    }
}

/// `BidGenerator.getBaseUrl`.
fn base_url(random: &mut JavaRandom) -> String {
    let mut url = b"https://www.nexmark.com/".to_vec();
    for _ in 0..3 {
        next_string(random, 5, b'_', &mut url);
        url.push(b'/');
    }
    url.extend_from_slice(b"item.htm?query=1");
    // ASCII by construction.
    String::from_utf8_lossy(&url).into_owned()
}

/// The columns of a batch of bids under construction.
pub(crate) struct BidColumns {
    auction: Int64Builder,
    bidder: Int64Builder,
    price: Int64Builder,
    channel: StringColumn,
    url: StringColumn,
    date_time: TimestampMicrosecondBuilder,
    extra: StringColumn,
}

impl BidColumns {
    pub(crate) fn with_capacity(rows: usize, avg_byte_size: i32) -> Self {
        let strings = |bytes: usize| StringColumn::with_capacity(rows, bytes);
        Self {
            auction: Int64Builder::with_capacity(rows),
            bidder: Int64Builder::with_capacity(rows),
            price: Int64Builder::with_capacity(rows),
            channel: strings(10),
            url: strings(64),
            date_time: TimestampMicrosecondBuilder::with_capacity(rows),
            // `extra` pads the row to the average size; what the other columns leave of it.
            extra: strings((avg_byte_size - 32).max(0) as usize + 4),
        }
    }

    /// `BidGenerator.nextBid`, drawing in Java's order. Java adds `FIRST_PERSON_ID` to the
    /// bidder twice (so bidders would be persons 1000 ids ahead); it is added once here.
    pub(crate) fn append(&mut self, event: &Event, params: &Params) {
        let mut random = params.random(event.id);
        let random = &mut random;

        // A bid is for a hot auction with probability 1 - 1/hot_auction_ratio.
        let auction = if random.next_int_bounded(params.hot_auction_ratio) > 0 {
            (last_base0_auction_id(event.id) / HOT_AUCTION_BLOCK) * HOT_AUCTION_BLOCK
        } else {
            next_base0_auction_id(event.id, random, params)
        };
        self.auction.append_value(auction + FIRST_AUCTION_ID);

        // A bid is by a hot bidder with probability 1 - 1/hot_bidder_ratio.
        let bidder = if random.next_int_bounded(params.hot_bidder_ratio) > 0 {
            (last_base0_person_id(event.id) / HOT_BIDDER_BLOCK) * HOT_BIDDER_BLOCK + 1
        } else {
            next_base0_person_id(event.id, random, params)
        };
        self.bidder.append_value(bidder + FIRST_PERSON_ID);

        self.price.append_value(next_price(random));

        let channels = &params.channels;
        if random.next_int_bounded(HOT_CHANNELS_RATIO) > 0 {
            let i = random.next_int_bounded(HOT_CHANNELS.len() as i32) as usize;
            self.channel.append(HOT_CHANNELS[i]);
            self.url.append(&channels.hot_urls[i]);
        } else {
            let i = random.next_int_bounded(CHANNELS_NUMBER) as usize;
            self.channel.append(&channels.names[i]);
            self.url.append(&channels.urls[i]);
        }

        self.date_time
            .append_value(event.timestamp_millis.wrapping_mul(1000));

        next_extra(
            random,
            8 + 8 + 8 + 8,
            params.avg_bid_byte_size,
            self.extra.buffer(),
        );
        self.extra.end_row();
    }

    pub(crate) fn finish(mut self) -> Result<RecordBatch> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.auction.finish()),
            Arc::new(self.bidder.finish()),
            Arc::new(self.price.finish()),
            self.channel.finish()?,
            self.url.finish()?,
            Arc::new(self.date_time.finish()),
            self.extra.finish()?,
        ];
        Ok(RecordBatch::try_new(
            super::schema(NexmarkTable::Bid),
            columns,
        )?)
    }
}
