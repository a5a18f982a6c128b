//! One error type for the whole engine. Each variant knows its SQLSTATE so the
//! wire layer can report errors the way PostgreSQL clients expect.

use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;

/// `Result` with Eddy's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors a statement can end with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The statement does not parse.
    #[error("{0}")]
    Syntax(String),
    /// A relation named in the statement does not exist.
    #[error("relation \"{0}\" does not exist")]
    UndefinedTable(String),
    /// A column named in the statement does not exist.
    #[error("{0}")]
    UndefinedColumn(String),
    /// CREATE of a name that is taken.
    #[error("relation \"{0}\" already exists")]
    DuplicateTable(String),
    /// A primary key would be duplicated.
    #[error("duplicate key value violates unique constraint \"{constraint}\"")]
    UniqueViolation {
        /// Name of the violated constraint.
        constraint: String,
        /// The offending key, as `(col)=(value)`.
        detail: String,
    },
    /// A NULL was written to a NOT NULL column.
    #[error(
        "null value in column \"{column}\" of relation \"{table}\" violates not-null constraint"
    )]
    NotNullViolation {
        /// The table written to.
        table: String,
        /// The column that refused the NULL.
        column: String,
    },
    /// DROP of an object that others depend on, without CASCADE.
    #[error("cannot drop {object} because other objects depend on it")]
    DependentObjects {
        /// The object named in DROP.
        object: String,
        /// Which objects depend on it.
        detail: String,
    },
    /// The object exists but is of another kind than the statement expects.
    #[error("\"{name}\" is not a {expected}")]
    WrongObjectType {
        /// Name of the object.
        name: String,
        /// The kind the statement wanted.
        expected: &'static str,
    },
    /// A construct Eddy cannot maintain incrementally (yet).
    #[error("{0}")]
    NotSupported(String),
    /// Division by zero while evaluating an expression.
    #[error("division by zero")]
    DivisionByZero,
    /// A value is out of range or malformed; the code is a 22xxx SQLSTATE.
    #[error("{message}")]
    Data {
        /// SQLSTATE, class 22.
        code: &'static str,
        /// What went wrong.
        message: String,
    },
    /// A semantic error in the query (class 42).
    #[error("{message}")]
    Plan {
        /// SQLSTATE, class 42.
        code: &'static str,
        /// What went wrong.
        message: String,
    },
    /// A connector failed or refused its configuration; the code is the
    /// connector's SQLSTATE.
    #[error("{message}")]
    Connector {
        /// SQLSTATE.
        code: &'static str,
        /// What went wrong.
        message: String,
    },
    /// The durable store (the data directory) failed: SQLSTATE 58030.
    #[error("durable storage failed: {0}")]
    Storage(String),
    /// A bug or an unexpected state inside Eddy.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The PostgreSQL SQLSTATE for this error.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            Error::Syntax(_) => "42601",
            Error::UndefinedTable(_) => "42P01",
            Error::UndefinedColumn(_) => "42703",
            Error::DuplicateTable(_) => "42P07",
            Error::UniqueViolation { .. } => "23505",
            Error::NotNullViolation { .. } => "23502",
            Error::DependentObjects { .. } => "2BP01",
            Error::WrongObjectType { .. } => "42809",
            Error::NotSupported(_) => "0A000",
            Error::DivisionByZero => "22012",
            Error::Data { code, .. } | Error::Plan { code, .. } | Error::Connector { code, .. } => {
                code
            }
            Error::Storage(_) => "58030",
            Error::Internal(_) => "XX000",
        }
    }

    /// Extra detail for the client, as PostgreSQL's `DETAIL:` line.
    pub fn detail(&self) -> Option<&str> {
        match self {
            Error::UniqueViolation { detail, .. } | Error::DependentObjects { detail, .. } => {
                Some(detail)
            }
            _ => None,
        }
    }

    /// A construct Eddy cannot maintain incrementally.
    pub fn not_supported(what: impl Into<String>) -> Self {
        Error::NotSupported(what.into())
    }

    /// An internal invariant was broken.
    pub fn internal(what: impl Into<String>) -> Self {
        Error::Internal(what.into())
    }

    /// A class-42 planning error with its SQLSTATE.
    pub fn plan(code: &'static str, message: impl Into<String>) -> Self {
        Error::Plan {
            code,
            message: message.into(),
        }
    }
}

impl From<ArrowError> for Error {
    fn from(error: ArrowError) -> Self {
        match error {
            ArrowError::DivideByZero => Error::DivisionByZero,
            ArrowError::ArithmeticOverflow(message) => Error::Data {
                code: "22003",
                message: strip_prefix(&message),
            },
            ArrowError::CastError(message) | ArrowError::ParseError(message) => Error::Data {
                code: "22P02",
                message: strip_prefix(&message),
            },
            ArrowError::ComputeError(message) if message.contains("Overflow") => Error::Data {
                code: "22003",
                message,
            },
            ArrowError::ExternalError(inner) => match inner.downcast::<DataFusionError>() {
                Ok(inner) => Error::from(*inner),
                Err(inner) => Error::Internal(inner.to_string()),
            },
            other => Error::Internal(other.to_string()),
        }
    }
}

impl From<DataFusionError> for Error {
    fn from(error: DataFusionError) -> Self {
        match error {
            DataFusionError::Context(_, inner) => Error::from(*inner),
            DataFusionError::Diagnostic(_, inner) => Error::from(*inner),
            DataFusionError::Shared(inner) => match std::sync::Arc::try_unwrap(inner) {
                Ok(inner) => Error::from(inner),
                Err(inner) => classify_message(&inner.to_string()),
            },
            DataFusionError::ArrowError(inner, _) => Error::from(*inner),
            DataFusionError::SQL(inner, _) => Error::Syntax(strip_prefix(&inner.to_string())),
            DataFusionError::SchemaError(inner, _) => {
                let message = inner.to_string();
                if message.contains("No field named") {
                    Error::UndefinedColumn(message)
                } else {
                    Error::plan("42000", message)
                }
            }
            DataFusionError::NotImplemented(message) => Error::NotSupported(message),
            DataFusionError::Plan(message) => classify_message(&message),
            DataFusionError::Execution(message) => classify_message(&message),
            DataFusionError::External(inner) => match inner.downcast::<DataFusionError>() {
                Ok(inner) => Error::from(*inner),
                Err(inner) => match inner.downcast::<ArrowError>() {
                    Ok(inner) => Error::from(*inner),
                    Err(inner) => match inner.downcast::<Error>() {
                        Ok(inner) => *inner,
                        Err(inner) => classify_message(&inner.to_string()),
                    },
                },
            },
            other => classify_message(&other.to_string()),
        }
    }
}

/// DataFusion reports many distinct conditions through one string variant;
/// recover the SQLSTATE from the wording.
fn classify_message(message: &str) -> Error {
    let lower = message.to_ascii_lowercase();
    if lower.contains("divide by zero") || lower.contains("division by zero") {
        Error::DivisionByZero
    } else if let Some(name) = missing_table_name(message) {
        Error::UndefinedTable(name)
    } else if lower.contains("no field named") || lower.contains("column not found") {
        Error::UndefinedColumn(message.to_string())
    } else if lower.contains("overflow") {
        Error::Data {
            code: "22003",
            message: message.to_string(),
        }
    } else if lower.contains("cannot cast") || lower.contains("cast error") {
        Error::Data {
            code: "22P02",
            message: message.to_string(),
        }
    } else if lower.contains("invalid function") || lower.contains("no function matches") {
        Error::plan("42883", message)
    } else if lower.contains("does not support") || lower.contains("not supported") {
        Error::NotSupported(message.to_string())
    } else {
        Error::plan("42000", message)
    }
}

fn missing_table_name(message: &str) -> Option<String> {
    let rest = message.split("table '").nth(1)?;
    let (name, tail) = rest.split_once('\'')?;
    tail.trim_start()
        .starts_with("not found")
        .then(|| name.rsplit('.').next().unwrap_or(name).to_string())
}

fn strip_prefix(message: &str) -> String {
    message
        .trim_start_matches("sql parser error: ")
        .trim_start_matches("Cast error: ")
        .trim_start_matches("Parser error: ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_table_maps_to_42p01() {
        let error = Error::from(DataFusionError::Plan(
            "table 'eddy.public.nope' not found".into(),
        ));
        assert_eq!(error.sqlstate(), "42P01");
        assert_eq!(error.to_string(), "relation \"nope\" does not exist");
    }

    #[test]
    fn arrow_divide_by_zero_maps_to_22012() {
        let error = Error::from(DataFusionError::ArrowError(
            Box::new(ArrowError::DivideByZero),
            None,
        ));
        assert_eq!(error.sqlstate(), "22012");
    }
}
