//! [`StringColumn`]: a `Utf8` column that generators write into in place.
//!
//! Arrow's `StringBuilder` takes whole values, so a generated string would be built in a
//! scratch buffer and then copied. Here a generator appends bytes straight to the value buffer
//! and then closes the row; the offsets are checked when the column is finished, so an
//! oversized batch is an error rather than a panic.

use arrow::array::{ArrayData, ArrayRef, StringArray};
use arrow::buffer::Buffer;
use arrow::datatypes::DataType;
use std::sync::Arc;

use crate::error::{Error, Result};

/// A `Utf8` column under construction; values are ASCII or otherwise valid UTF-8.
#[derive(Debug, Default)]
pub(crate) struct StringColumn {
    offsets: Vec<i32>,
    values: Vec<u8>,
    overflowed: bool,
}

impl StringColumn {
    /// Room for `rows` values of `bytes_per_row` bytes on average (up to a limit; the buffer
    /// grows past it if needed).
    pub(crate) fn with_capacity(rows: usize, bytes_per_row: usize) -> Self {
        const MAX_RESERVED_BYTES: usize = 1 << 28;
        let mut offsets = Vec::with_capacity(rows.saturating_add(1).min(MAX_RESERVED_BYTES / 4));
        offsets.push(0);
        Self {
            offsets,
            values: Vec::with_capacity(rows.saturating_mul(bytes_per_row).min(MAX_RESERVED_BYTES)),
            overflowed: false,
        }
    }

    /// The value buffer, to append the current row's bytes to. Only whole UTF-8 sequences may
    /// be appended, and bytes of closed rows must not be changed.
    #[inline]
    pub(crate) fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.values
    }

    /// The bytes of the row being written.
    #[inline]
    pub(crate) fn current(&self) -> &[u8] {
        let start = self.offsets.last().map_or(0, |&o| o as usize);
        &self.values[start..]
    }

    /// Closes the current row.
    #[inline]
    pub(crate) fn end_row(&mut self) {
        match i32::try_from(self.values.len()) {
            Ok(offset) => self.offsets.push(offset),
            Err(_) => {
                self.overflowed = true;
                self.offsets.push(i32::MAX);
            }
        }
    }

    /// Appends a whole row.
    #[inline]
    pub(crate) fn append(&mut self, value: &str) {
        self.values.extend_from_slice(value.as_bytes());
        self.end_row();
    }

    /// The finished array, validated by Arrow (offsets and UTF-8).
    pub(crate) fn finish(self) -> Result<ArrayRef> {
        if self.overflowed {
            return Err(Error::InvalidConfig(
                "a generated batch has over 2 GiB in one string column; ask for fewer rows per batch"
                    .to_string(),
            ));
        }
        let rows = self.offsets.len() - 1;
        let data = ArrayData::builder(DataType::Utf8)
            .len(rows)
            .add_buffer(Buffer::from_vec(self.offsets))
            .add_buffer(Buffer::from_vec(self.values))
            .build()?;
        Ok(Arc::new(StringArray::from(data)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Array;

    #[test]
    fn builds_a_string_array() {
        let mut column = StringColumn::with_capacity(2, 4);
        column.append("ab");
        column.buffer().extend_from_slice(b"c");
        assert_eq!(column.current(), b"c");
        column.buffer().push(b'd');
        column.end_row();
        column.end_row();
        let array = column.finish().unwrap_or_else(|e| panic!("{e}"));
        let array = array
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap_or_else(|| panic!("not a StringArray"));
        assert_eq!(array.len(), 3);
        assert_eq!(array.value(0), "ab");
        assert_eq!(array.value(1), "cd");
        assert_eq!(array.value(2), "");
    }

    #[test]
    fn rejects_invalid_utf8() {
        let mut column = StringColumn::with_capacity(1, 1);
        column.buffer().push(0xFF);
        column.end_row();
        assert!(column.finish().is_err());
    }
}
