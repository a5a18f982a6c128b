//! Message payloads decoded straight into Arrow columns, a batch of
//! messages at a time:
//!
//! * `ENCODE JSON` (arrow-json): each payload holds one JSON object; its
//!   fields are matched to the declared columns by name (missing fields are
//!   NULL, other fields are ignored).
//! * `ENCODE CSV` (arrow-csv): each payload holds one CSV record, fields in
//!   the order of the declared columns (an empty field is NULL).
//! * `ENCODE BYTES`: the payload is the value of the one `BYTEA` column.
//!
//! The whole batch is decoded in one pass; only if that fails (some
//! message is bad) is the batch decoded again message by message, so that
//! every bad message gets its own reason and the good ones still flow.

use std::sync::Arc;

use arrow::array::{BinaryArray, RecordBatch};
use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow_json::reader::ReaderBuilder;

use crate::Result;

/// How payloads are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    Json,
    Csv {
        /// The field delimiter.
        delimiter: u8,
    },
    Bytes,
}

/// arrow-json's or arrow-csv's push decoder.
enum Decoder {
    Json(arrow_json::reader::Decoder),
    Csv(Box<arrow::csv::reader::Decoder>),
    Bytes,
}

impl Decoder {
    fn decode(&mut self, buf: &[u8]) -> std::result::Result<usize, ArrowError> {
        match self {
            Decoder::Json(decoder) => decoder.decode(buf),
            Decoder::Csv(decoder) => decoder.decode(buf),
            Decoder::Bytes => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> std::result::Result<Option<RecordBatch>, ArrowError> {
        match self {
            Decoder::Json(decoder) => decoder.flush(),
            Decoder::Csv(decoder) => decoder.flush(),
            Decoder::Bytes => Ok(None),
        }
    }
}

/// The rows of a batch of payloads and what happened to each payload.
pub(crate) struct Decoded {
    /// One row per good payload, in order (`None`: no good payload).
    pub(crate) rows: Option<RecordBatch>,
    /// Per payload: decoded, or why not.
    pub(crate) outcomes: Vec<Result<(), String>>,
}

impl Decoded {
    /// The rows of `batches` (of `schema`) joined, and `outcomes`.
    pub(crate) fn new(
        schema: &SchemaRef,
        batches: &[RecordBatch],
        outcomes: Vec<Result<(), String>>,
    ) -> Result<Self> {
        let rows = if batches.is_empty() {
            None
        } else {
            Some(concat_batches(schema, batches)?)
        };
        Ok(Self { rows, outcomes })
    }
}

/// Decodes payloads into batches of one schema.
pub(crate) struct JsonDecoder {
    schema: SchemaRef,
    encoding: Encoding,
    decoder: Decoder,
}

/// Payloads decoded into one batch at most (the decoder's batch size).
pub(crate) const MAX_ROWS: usize = 1 << 16;

impl JsonDecoder {
    pub(crate) fn with_encoding(schema: SchemaRef, encoding: Encoding) -> Result<Self> {
        let decoder = Self::decoder(&schema, encoding)?;
        Ok(Self {
            schema,
            encoding,
            decoder,
        })
    }

    /// The schema payloads are decoded into.
    pub(crate) fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn decoder(schema: &SchemaRef, encoding: Encoding) -> Result<Decoder> {
        Ok(match encoding {
            Encoding::Json => Decoder::Json(
                ReaderBuilder::new(schema.clone())
                    .with_batch_size(MAX_ROWS)
                    .build_decoder()?,
            ),
            Encoding::Csv { delimiter } => Decoder::Csv(Box::new(
                arrow::csv::ReaderBuilder::new(schema.clone())
                    .with_header(false)
                    .with_delimiter(delimiter)
                    .with_batch_size(MAX_ROWS)
                    .build_decoder(),
            )),
            Encoding::Bytes => Decoder::Bytes,
        })
    }

    fn reset(&mut self) -> Result<()> {
        self.decoder = Self::decoder(&self.schema, self.encoding)?;
        Ok(())
    }

    /// Decode `payloads` (at most 65536); `None` is a message without a
    /// payload, which is bad for a JSON source.
    pub(crate) fn decode(&mut self, payloads: &[Option<&[u8]>]) -> Result<Decoded> {
        if self.encoding == Encoding::Bytes {
            // Any payload is a value, a missing one NULL.
            let values = BinaryArray::from_iter(payloads.iter().copied());
            let rows = RecordBatch::try_new(self.schema.clone(), vec![Arc::new(values)])?;
            return Ok(Decoded {
                rows: Some(rows),
                outcomes: vec![Ok(()); payloads.len()],
            });
        }
        if payloads.iter().all(|p| p.is_some_and(|p| !p.is_empty())) {
            if let Ok(Some(rows)) = self.decode_all(payloads) {
                if rows.num_rows() == payloads.len() {
                    return Ok(Decoded {
                        rows: Some(rows),
                        outcomes: vec![Ok(()); payloads.len()],
                    });
                }
            }
            // The decoder may hold half a batch: start afresh.
            self.reset()?;
        }
        let mut batches = Vec::new();
        let mut outcomes = Vec::with_capacity(payloads.len());
        for payload in payloads {
            let outcome = match payload {
                None => Err("message has no payload".to_string()),
                Some(p) if p.iter().all(u8::is_ascii_whitespace) => {
                    Err("message payload is empty".to_string())
                }
                Some(payload) => match self.decode_all(&[Some(payload)]) {
                    Ok(Some(rows)) if rows.num_rows() == 1 => {
                        batches.push(rows);
                        Ok(())
                    }
                    Ok(rows) => {
                        let what = match self.encoding {
                            Encoding::Csv { .. } => "CSV record",
                            _ => "JSON object",
                        };
                        Err(format!(
                            "expected one {what}, found {}",
                            rows.map_or(0, |r| r.num_rows())
                        ))
                    }
                    Err(error) => {
                        self.reset()?;
                        Err(error.to_string())
                    }
                },
            };
            outcomes.push(outcome);
        }
        Decoded::new(&self.schema, &batches, outcomes)
    }

    fn decode_all(
        &mut self,
        payloads: &[Option<&[u8]>],
    ) -> std::result::Result<Option<RecordBatch>, ArrowError> {
        for payload in payloads.iter().flatten() {
            let mut rest: &[u8] = payload;
            if let Encoding::Csv { .. } = self.encoding {
                // One record per message; its own line end is added below.
                while let Some(stripped) = rest.strip_suffix(b"\n") {
                    rest = stripped.strip_suffix(b"\r").unwrap_or(stripped);
                }
            }
            while !rest.is_empty() {
                let read = self.decoder.decode(rest)?;
                if read == 0 {
                    break;
                }
                rest = &rest[read..];
            }
            // Separate values so that two numbers cannot run together (and
            // end the CSV record).
            self.decoder.decode(b"\n")?;
        }
        self.decoder.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{AsArray, Int64Array};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
        ]))
    }

    #[test]
    fn good_batches_decode_in_one_pass() -> Result<()> {
        let mut decoder = JsonDecoder::with_encoding(schema(), Encoding::Json)?;
        let payloads: Vec<&[u8]> =
            vec![br#"{"id": 1, "name": "a"}"#, br#"{"id": 2, "extra": true}"#];
        let payloads: Vec<Option<&[u8]>> = payloads.into_iter().map(Some).collect();
        let decoded = decoder.decode(&payloads)?;
        assert!(decoded.outcomes.iter().all(|o| o.is_ok()));
        let rows = decoded.rows.expect("rows");
        assert_eq!(
            rows.column(0).as_primitive::<Int64Type>(),
            &Int64Array::from(vec![1, 2])
        );
        assert!(rows.column(1).is_null(1));
        Ok(())
    }

    #[test]
    fn csv_records_decode_and_bad_ones_are_reported() -> Result<()> {
        let mut decoder = JsonDecoder::with_encoding(schema(), Encoding::Csv { delimiter: b';' })?;
        let payloads: Vec<Option<&[u8]>> =
            vec![Some(b"1;a\n"), Some(b"x;b"), Some(b"3;"), Some(b"4;d\n5;e")];
        let decoded = decoder.decode(&payloads)?;
        let ok: Vec<bool> = decoded.outcomes.iter().map(|o| o.is_ok()).collect();
        assert_eq!(ok, [true, false, true, false]);
        let rows = decoded.rows.expect("rows");
        assert_eq!(
            rows.column(0).as_primitive::<Int64Type>(),
            &Int64Array::from(vec![1, 3])
        );
        assert!(rows.column(1).is_null(1));
        Ok(())
    }

    #[test]
    fn bad_messages_are_reported_one_by_one() -> Result<()> {
        let mut decoder = JsonDecoder::with_encoding(schema(), Encoding::Json)?;
        let payloads: Vec<Option<&[u8]>> = vec![
            Some(br#"{"id": 1}"#),
            Some(b"{not json"),
            None,
            Some(br#"{"id": "seven"}"#),
            Some(br#"{"id": 4}{"id": 5}"#),
            Some(b""),
            Some(br#"{"id": 6}"#),
        ];
        let decoded = decoder.decode(&payloads)?;
        let ok: Vec<bool> = decoded.outcomes.iter().map(|o| o.is_ok()).collect();
        assert_eq!(ok, [true, false, false, false, false, false, true]);
        let rows = decoded.rows.expect("rows");
        assert_eq!(
            rows.column(0).as_primitive::<Int64Type>(),
            &Int64Array::from(vec![1, 6])
        );
        // The decoder is usable afterwards.
        let decoded = decoder.decode(&[Some(br#"{"id": 9}"#)])?;
        assert_eq!(decoded.rows.map(|r| r.num_rows()), Some(1));
        Ok(())
    }
}
