//! SQL functions Eddy adds to DataFusion's.

use datafusion::arrow::datatypes::DataType;
use datafusion::logical_expr::{create_udf, ColumnarValue, ScalarUDF, Volatility};
use datafusion::scalar::ScalarValue;

/// `version()`, in the shape PostgreSQL clients parse.
pub fn version() -> ScalarUDF {
    let text = format!(
        "PostgreSQL 16.6 on Eddy {}, a streaming SQL database",
        env!("CARGO_PKG_VERSION")
    );
    create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Immutable,
        std::sync::Arc::new(move |_: &[ColumnarValue]| {
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(text.clone()))))
        }),
    )
}
