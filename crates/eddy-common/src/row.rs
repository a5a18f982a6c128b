//! Row encoding for state. Arrow's row format turns a row of any column types
//! into bytes that compare like the row itself, so state can key maps by
//! bytes and turn keys back into columns without keeping Arrow arrays around.

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::row::{RowConverter, RowParser, Rows, SortField};

use crate::Result;

/// Encodes columns of fixed types to rows of bytes and back.
#[derive(Debug)]
pub struct RowCodec {
    converter: RowConverter,
    parser: RowParser,
    types: Vec<DataType>,
}

impl RowCodec {
    /// A codec for columns of these types, all ascending, nulls first.
    pub fn new(types: Vec<DataType>) -> Result<Self> {
        Self::with_fields(
            types
                .into_iter()
                .map(|t| (t, SortOptions::default()))
                .collect(),
        )
    }

    /// A codec for all columns of `schema`.
    pub fn for_schema(schema: &SchemaRef) -> Result<Self> {
        Self::new(
            schema
                .fields()
                .iter()
                .map(|f| f.data_type().clone())
                .collect(),
        )
    }

    /// A codec with explicit sort options, for keys whose byte order must
    /// follow an `ORDER BY`.
    pub fn with_fields(fields: Vec<(DataType, SortOptions)>) -> Result<Self> {
        let types = fields.iter().map(|(t, _)| t.clone()).collect();
        let converter = RowConverter::new(
            fields
                .into_iter()
                .map(|(t, options)| SortField::new_with_options(t, options))
                .collect(),
        )?;
        let parser = converter.parser();
        Ok(Self {
            converter,
            parser,
            types,
        })
    }

    /// The column types this codec encodes.
    pub fn types(&self) -> &[DataType] {
        &self.types
    }

    /// Encode whole columns. Float zeros are encoded as +0, so that -0.0
    /// and 0.0 are one key, as they are equal in SQL.
    pub fn encode(&self, columns: &[ArrayRef]) -> Result<Rows> {
        if !self.types.iter().any(DataType::is_floating) {
            return Ok(self.converter.convert_columns(columns)?);
        }
        let columns: Vec<ArrayRef> = columns.iter().map(positive_zeros).collect();
        Ok(self.converter.convert_columns(&columns)?)
    }

    /// Decode rows given as bytes (as produced by [`RowCodec::encode`]).
    /// Bytes that are no such row (state written by another version, or
    /// damaged) fail with an error: Arrow's row parser does not check them
    /// and panics on what it cannot read, which is caught here.
    pub fn decode<'a, I>(&self, rows: I) -> Result<Vec<ArrayRef>>
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        let parsed: Vec<_> = rows
            .into_iter()
            .map(|bytes| self.parser.parse(bytes))
            .collect();
        let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.converter.convert_rows(parsed.iter().copied())
        }));
        match decoded {
            Ok(columns) => Ok(columns?),
            Err(_) => Err(crate::Error::Storage(
                "a stored row does not decode as its columns' types (written by another \
                 version of Eddy, or damaged)"
                    .into(),
            )),
        }
    }
}

/// The same column with every -0.0 replaced by +0.0.
fn positive_zeros(column: &ArrayRef) -> ArrayRef {
    use datafusion::arrow::array::{AsArray, PrimitiveArray};
    use datafusion::arrow::datatypes::{Float32Type, Float64Type};
    use std::sync::Arc;
    match column.data_type() {
        DataType::Float64 => {
            let values: PrimitiveArray<Float64Type> = column
                .as_primitive::<Float64Type>()
                .unary(|v| if v == 0.0 { 0.0 } else { v });
            Arc::new(values)
        }
        DataType::Float32 => {
            let values: PrimitiveArray<Float32Type> = column
                .as_primitive::<Float32Type>()
                .unary(|v| if v == 0.0 { 0.0 } else { v });
            Arc::new(values)
        }
        _ => column.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, StringArray};

    use super::*;

    #[test]
    fn bytes_that_are_no_row_fail_to_decode_without_a_panic() -> Result<()> {
        let codec = RowCodec::new(vec![DataType::Int64, DataType::Utf8])?;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![7])),
            Arc::new(StringArray::from(vec!["seven"])),
        ];
        let rows = codec.encode(&columns)?;
        let row = rows.row(0).data().to_vec();
        let back = codec.decode([row.as_slice()])?;
        assert_eq!(back[0].as_ref(), columns[0].as_ref());
        assert_eq!(back[1].as_ref(), columns[1].as_ref());
        for damaged in [&row[..3], &row[..row.len() - 1], &[0xFFu8; 2][..]] {
            let error = codec
                .decode([damaged])
                .expect_err("damaged bytes must not decode");
            assert_eq!(error.sqlstate(), "58030", "{error}");
        }
        Ok(())
    }
}
