//! How a relation's rows are encoded and decoded.

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::row::Rows;
use eddy_common::row::RowCodec;
use eddy_common::{Error, Result};

/// How a relation's rows are encoded: Arrow's row format over its columns,
/// a keyed relation's key columns first. The encoding of a row then starts
/// with the encoding of its key (each column's encoding delimits itself),
/// so the rows of one key sort together and are found by that prefix.
pub(super) struct Encoding {
    pub(super) codec: RowCodec,
    /// The schema's columns in encoding order (`None`: schema order).
    pub(super) order: Option<Vec<usize>>,
    /// The column types, in schema order.
    pub(super) types: Vec<DataType>,
    /// The key columns, and a codec of their types (what a row encoding
    /// starts with).
    pub(super) key: Vec<usize>,
    pub(super) key_codec: RowCodec,
}

impl Encoding {
    pub(super) fn new(schema: &SchemaRef, key: &[usize]) -> Result<Self> {
        let types: Vec<DataType> = schema
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        let order: Vec<usize> = key
            .iter()
            .copied()
            .chain((0..types.len()).filter(|i| !key.contains(i)))
            .collect();
        if order.len() != types.len() || order.iter().any(|i| *i >= types.len()) {
            return Err(Error::internal(
                "a relation key names columns it does not have",
            ));
        }
        let identity = order.iter().enumerate().all(|(at, i)| at == *i);
        Ok(Self {
            codec: RowCodec::new(order.iter().map(|i| types[*i].clone()).collect())?,
            key_codec: RowCodec::new(key.iter().map(|i| types[*i].clone()).collect())?,
            key: key.to_vec(),
            order: (!identity).then_some(order),
            types,
        })
    }

    /// The encodings of rows given as columns in schema order.
    pub(super) fn encode(&self, columns: &[ArrayRef]) -> Result<Rows> {
        match &self.order {
            None => self.codec.encode(columns),
            Some(order) => {
                let ordered = order
                    .iter()
                    .map(|i| columns.get(*i).cloned())
                    .collect::<Option<Vec<ArrayRef>>>()
                    .ok_or_else(|| Error::internal("rows lack a column of their relation"))?;
                self.codec.encode(&ordered)
            }
        }
    }

    /// The columns, in schema order, of rows given as encodings.
    pub(super) fn decode<'a>(
        &self,
        rows: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Vec<ArrayRef>> {
        let decoded = self.codec.decode(rows)?;
        let Some(order) = &self.order else {
            return Ok(decoded);
        };
        let mut columns: Vec<Option<ArrayRef>> = vec![None; decoded.len()];
        for (column, at) in decoded.into_iter().zip(order) {
            columns[*at] = Some(column);
        }
        columns
            .into_iter()
            .map(|c| c.ok_or_else(|| Error::internal("a decoded row lacks a column")))
            .collect()
    }
}
