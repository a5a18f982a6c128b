//! Person events (Java's `PersonGenerator`) and the person-id rules that auctions and bids use.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Builder, RecordBatch, TimestampMicrosecondBuilder};

use super::java_random::JavaRandom;
use super::strings::{next_extra, next_long, next_string};
use super::{Event, NexmarkTable, Params, FIRST_PERSON_ID, PERSON_PROPORTION, TOTAL_PROPORTION};
use crate::error::Result;
use crate::string_column::StringColumn;

/// Ids a random person may be ahead of the newest one (Java's `PERSON_ID_LEAD`).
const PERSON_ID_LEAD: i64 = 10;

/// A few states, so that the queries find matches in small runs.
const US_STATES: [&str; 6] = ["AZ", "CA", "ID", "OR", "WA", "WY"];

const US_CITIES: [&str; 10] = [
    "Phoenix",
    "Los Angeles",
    "San Francisco",
    "Boise",
    "Portland",
    "Bend",
    "Redmond",
    "Seattle",
    "Kent",
    "Cheyenne",
];

const FIRST_NAMES: [&str; 11] = [
    "Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter",
];

const LAST_NAMES: [&str; 9] = [
    "Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris",
];

/// `PersonGenerator.lastBase0PersonId`: the newest person id (from 0) at an event; the event's
/// own id if it is a person.
pub(crate) fn last_base0_person_id(event_id: i64) -> i64 {
    let epoch = event_id / TOTAL_PROPORTION;
    let offset = (event_id % TOTAL_PROPORTION).min(PERSON_PROPORTION - 1);
    epoch * PERSON_PROPORTION + offset
}

/// `PersonGenerator.nextBase0PersonId`: a random one of the active people, or up to
/// `PERSON_ID_LEAD` ids ahead of the newest one.
pub(crate) fn next_base0_person_id(event_id: i64, random: &mut JavaRandom, params: &Params) -> i64 {
    let people = last_base0_person_id(event_id) + 1;
    let active = people.min(params.active_people);
    let n = next_long(random, active + PERSON_ID_LEAD);
    people - active + n
}

/// The columns of a batch of persons under construction.
pub(crate) struct PersonColumns {
    id: Int64Builder,
    name: StringColumn,
    email_address: StringColumn,
    credit_card: StringColumn,
    city: StringColumn,
    state: StringColumn,
    date_time: TimestampMicrosecondBuilder,
    extra: StringColumn,
}

impl PersonColumns {
    pub(crate) fn with_capacity(rows: usize, avg_byte_size: i32) -> Self {
        let strings = |bytes: usize| StringColumn::with_capacity(rows, bytes);
        Self {
            id: Int64Builder::with_capacity(rows),
            name: strings(12),
            email_address: strings(12),
            credit_card: strings(19),
            city: strings(8),
            state: strings(2),
            date_time: TimestampMicrosecondBuilder::with_capacity(rows),
            // `extra` pads the row to the average size; what the other columns leave of it.
            extra: strings((avg_byte_size - 58).max(0) as usize + 8),
        }
    }

    /// `PersonGenerator.nextPerson`, drawing in Java's order.
    pub(crate) fn append(&mut self, event: &Event, params: &Params) {
        let mut random = params.random(event.id);
        let random = &mut random;
        self.id
            .append_value(last_base0_person_id(event.id) + FIRST_PERSON_ID);

        let first = FIRST_NAMES[random.next_int_bounded(FIRST_NAMES.len() as i32) as usize];
        let last = LAST_NAMES[random.next_int_bounded(LAST_NAMES.len() as i32) as usize];
        let name = self.name.buffer();
        name.extend_from_slice(first.as_bytes());
        name.push(b' ');
        name.extend_from_slice(last.as_bytes());
        let mut size = self.name.current().len();
        self.name.end_row();

        let email = self.email_address.buffer();
        next_string(random, 7, b' ', email);
        email.push(b'@');
        next_string(random, 5, b' ', email);
        email.extend_from_slice(b".com");
        size += self.email_address.current().len();
        self.email_address.end_row();

        let card = self.credit_card.buffer();
        for i in 0..4 {
            if i > 0 {
                card.push(b' ');
            }
            push_four_digits(card, random.next_int_bounded(10_000));
        }
        size += self.credit_card.current().len();
        self.credit_card.end_row();

        let city = US_CITIES[random.next_int_bounded(US_CITIES.len() as i32) as usize];
        let state = US_STATES[random.next_int_bounded(US_STATES.len() as i32) as usize];
        self.city.append(city);
        self.state.append(state);
        size += city.len() + state.len();

        self.date_time
            .append_value(event.timestamp_millis.wrapping_mul(1000));

        next_extra(
            random,
            8 + size as i32,
            params.avg_person_byte_size,
            self.extra.buffer(),
        );
        self.extra.end_row();
    }

    pub(crate) fn finish(mut self) -> Result<RecordBatch> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.id.finish()),
            self.name.finish()?,
            self.email_address.finish()?,
            self.credit_card.finish()?,
            self.city.finish()?,
            self.state.finish()?,
            Arc::new(self.date_time.finish()),
            self.extra.finish()?,
        ];
        Ok(RecordBatch::try_new(
            super::schema(NexmarkTable::Person),
            columns,
        )?)
    }
}

/// Java's `String.format("%04d", n)` for `0 <= n < 10000`.
fn push_four_digits(out: &mut Vec<u8>, n: i32) {
    for divisor in [1000, 100, 10, 1] {
        out.push(b'0' + ((n / divisor) % 10) as u8);
    }
}
