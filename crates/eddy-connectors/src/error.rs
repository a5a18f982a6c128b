//! The crate's one error type. Every variant knows its SQLSTATE, so the layer that reports it
//! to a client can do so the way PostgreSQL would.

use arrow::datatypes::DataType;
use arrow::error::ArrowError;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors from configuring or running a generator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An option key that the generator does not know.
    #[error("unrecognized option \"{key}\"")]
    UnknownOption {
        /// The key as written.
        key: String,
    },
    /// An option value that does not parse or is out of range.
    #[error("invalid value for option \"{key}\": \"{value}\" ({reason})")]
    InvalidOption {
        /// The key as written.
        key: String,
        /// The value as written.
        value: String,
        /// Why the value was refused.
        reason: String,
    },
    /// A `fields.<column>.*` option names a column the schema does not have.
    #[error("column \"{column}\" named by option \"{key}\" does not exist")]
    UnknownColumn {
        /// The column name taken from the key.
        column: String,
        /// The key as written.
        key: String,
    },
    /// A column whose type the generator cannot produce.
    #[error("datagen cannot generate column \"{column}\" of type {data_type}")]
    UnsupportedType {
        /// The column.
        column: String,
        /// Its Arrow type.
        data_type: DataType,
    },
    /// An option Eddy knows but does not support yet.
    #[error("option \"{0}\" is not supported yet")]
    UnsupportedOption(String),
    /// A `FORMAT ... ENCODE ...` the connector does not support.
    #[error("{0} is not supported")]
    UnsupportedFormat(String),
    /// Reading from an external system failed.
    #[error("{0}")]
    Source(String),
    /// Writing to an external system failed, or the sink's input does not
    /// fit its format.
    #[error("{0}")]
    Sink(String),
    /// `connector = '...'` names a connector Eddy does not have.
    #[error("connector \"{0}\" is not supported")]
    UnsupportedConnector(String),
    /// A configuration that is inconsistent as a whole (each option parsed on its own).
    #[error("invalid generator configuration: {0}")]
    InvalidConfig(String),
    /// Building a batch failed; a bug in the generator, as the columns are built to fit.
    #[error("arrow: {0}")]
    Arrow(#[source] ArrowError),
}

impl Error {
    /// The PostgreSQL SQLSTATE for this error.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            // invalid_parameter_value
            Error::UnknownOption { .. } | Error::InvalidOption { .. } | Error::InvalidConfig(_) => {
                "22023"
            }
            // undefined_column
            Error::UnknownColumn { .. } => "42703",
            // feature_not_supported
            Error::UnsupportedType { .. }
            | Error::UnsupportedConnector(_)
            | Error::UnsupportedOption(_)
            | Error::UnsupportedFormat(_) => "0A000",
            // io_error
            Error::Source(_) | Error::Sink(_) => "58030",
            // internal_error
            Error::Arrow(_) => "XX000",
        }
    }

    pub(crate) fn invalid_option(
        key: impl Into<String>,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Error::InvalidOption {
            key: key.into(),
            value: value.into(),
            reason: reason.into(),
        }
    }
}

impl From<ArrowError> for Error {
    fn from(error: ArrowError) -> Self {
        Error::Arrow(error)
    }
}
