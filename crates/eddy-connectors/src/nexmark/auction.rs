//! Auction events (Java's `AuctionGenerator`) and the auction-id rules that bids use.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Builder, RecordBatch, TimestampMicrosecondBuilder};

use super::java_random::JavaRandom;
use super::person::{last_base0_person_id, next_base0_person_id};
use super::strings::{next_extra, next_long, next_price, next_string};
use super::{
    Event, NexmarkTable, Params, AUCTION_PROPORTION, FIRST_AUCTION_ID, FIRST_CATEGORY_ID,
    FIRST_PERSON_ID, PERSON_PROPORTION, TOTAL_PROPORTION,
};
use crate::error::Result;
use crate::string_column::StringColumn;

/// Number of categories, from `FIRST_CATEGORY_ID` on.
const NUM_CATEGORIES: i32 = 5;

/// Ids a random auction may be ahead of the newest one (Java's `AUCTION_ID_LEAD`).
const AUCTION_ID_LEAD: i64 = 10;

/// Hot sellers are the first person of each block of this many (Java's `HOT_SELLER_RATIO`).
const HOT_SELLER_BLOCK: i64 = 100;

/// `AuctionGenerator.lastBase0AuctionId`: the newest auction id (from 0) at an event; the
/// event's own id if it is an auction.
pub(crate) fn last_base0_auction_id(event_id: i64) -> i64 {
    let mut epoch = event_id / TOTAL_PROPORTION;
    let mut offset = event_id % TOTAL_PROPORTION;
    if offset < PERSON_PROPORTION {
        // A person: the last auction of the previous epoch.
        epoch -= 1;
        offset = AUCTION_PROPORTION - 1;
    } else if offset >= PERSON_PROPORTION + AUCTION_PROPORTION {
        // A bid: the last auction of this epoch.
        offset = AUCTION_PROPORTION - 1;
    } else {
        offset -= PERSON_PROPORTION;
    }
    epoch * AUCTION_PROPORTION + offset
}

/// `AuctionGenerator.nextBase0AuctionId`: a random one of the in-flight auctions, or up to
/// `AUCTION_ID_LEAD` ids ahead of the newest one.
pub(crate) fn next_base0_auction_id(
    event_id: i64,
    random: &mut JavaRandom,
    params: &Params,
) -> i64 {
    let max_auction = last_base0_auction_id(event_id);
    let min_auction = (max_auction - params.in_flight_auctions).max(0);
    min_auction + next_long(random, max_auction - min_auction + 1 + AUCTION_ID_LEAD)
}

/// `AuctionGenerator.nextAuctionLengthMs`: on average the event time until
/// `in_flight_auctions` more auctions have been created.
fn next_auction_length_millis(event: &Event, random: &mut JavaRandom, params: &Params) -> i64 {
    let events_for_auctions = params.in_flight_auctions * TOTAL_PROPORTION / AUCTION_PROPORTION;
    let future_auction = params.timestamp_millis(event.number + events_for_auctions);
    let horizon = future_auction.wrapping_sub(event.timestamp_millis);
    1 + next_long(random, horizon.saturating_mul(2).max(1))
}

/// The columns of a batch of auctions under construction.
pub(crate) struct AuctionColumns {
    id: Int64Builder,
    item_name: StringColumn,
    description: StringColumn,
    initial_bid: Int64Builder,
    reserve: Int64Builder,
    date_time: TimestampMicrosecondBuilder,
    expires: TimestampMicrosecondBuilder,
    seller: Int64Builder,
    category: Int64Builder,
    extra: StringColumn,
}

impl AuctionColumns {
    pub(crate) fn with_capacity(rows: usize, avg_byte_size: i32) -> Self {
        let strings = |bytes: usize| StringColumn::with_capacity(rows, bytes);
        Self {
            id: Int64Builder::with_capacity(rows),
            item_name: strings(12),
            description: strings(52),
            initial_bid: Int64Builder::with_capacity(rows),
            reserve: Int64Builder::with_capacity(rows),
            date_time: TimestampMicrosecondBuilder::with_capacity(rows),
            expires: TimestampMicrosecondBuilder::with_capacity(rows),
            seller: Int64Builder::with_capacity(rows),
            category: Int64Builder::with_capacity(rows),
            // `extra` pads the row to the average size; what the other columns leave of it.
            extra: strings((avg_byte_size - 110).max(0) as usize + 8),
        }
    }

    /// `AuctionGenerator.nextAuction`, drawing in Java's order.
    pub(crate) fn append(&mut self, event: &Event, params: &Params) {
        let mut random = params.random(event.id);
        let random = &mut random;
        self.id
            .append_value(last_base0_auction_id(event.id) + FIRST_AUCTION_ID);

        // An auction is by a hot seller with probability 1 - 1/hot_seller_ratio.
        let seller = if random.next_int_bounded(params.hot_seller_ratio) > 0 {
            (last_base0_person_id(event.id) / HOT_SELLER_BLOCK) * HOT_SELLER_BLOCK
        } else {
            next_base0_person_id(event.id, random, params)
        };
        self.seller.append_value(seller + FIRST_PERSON_ID);

        self.category
            .append_value(FIRST_CATEGORY_ID + i64::from(random.next_int_bounded(NUM_CATEGORIES)));
        let initial_bid = next_price(random);
        self.initial_bid.append_value(initial_bid);
        let expires = event
            .timestamp_millis
            .wrapping_add(next_auction_length_millis(event, random, params));
        self.date_time
            .append_value(event.timestamp_millis.wrapping_mul(1000));
        self.expires.append_value(expires.wrapping_mul(1000));

        let mut size = next_string(random, 20, b' ', self.item_name.buffer());
        self.item_name.end_row();
        size += next_string(random, 100, b' ', self.description.buffer());
        self.description.end_row();

        self.reserve.append_value(initial_bid + next_price(random));

        let current_size = 8 + size as i32 + 8 + 8 + 8 + 8 + 8;
        next_extra(
            random,
            current_size,
            params.avg_auction_byte_size,
            self.extra.buffer(),
        );
        self.extra.end_row();
    }

    pub(crate) fn finish(mut self) -> Result<RecordBatch> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.id.finish()),
            self.item_name.finish()?,
            self.description.finish()?,
            Arc::new(self.initial_bid.finish()),
            Arc::new(self.reserve.finish()),
            Arc::new(self.date_time.finish()),
            Arc::new(self.expires.finish()),
            Arc::new(self.seller.finish()),
            Arc::new(self.category.finish()),
            self.extra.finish()?,
        ];
        Ok(RecordBatch::try_new(
            super::schema(NexmarkTable::Auction),
            columns,
        )?)
    }
}
