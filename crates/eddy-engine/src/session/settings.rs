//! Session settings: `SET` and `SHOW` of what clients ask for, and the
//! server settings `SHOW` gives but `SET` refuses.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::sql::sqlparser::ast;
use eddy_common::{Error, Result};

use super::{text_schema, CommandTag, Output, Session};
use crate::catalog::ObjectKind;
use crate::Engine;

/// The server's checkpoint interval, as `SHOW` names it.
const CHECKPOINT_INTERVAL: &str = "checkpoint_interval";
/// The server's memory budget for operator state, as `SHOW` names it.
const MEMORY_BUDGET: &str = "memory_budget";
/// The server settings `SHOW` gives, with the flag that sets each.
const SERVER_SETTINGS: [(&str, &str); 2] = [
    (CHECKPOINT_INTERVAL, "--checkpoint-interval-ms"),
    (MEMORY_BUDGET, "--memory-budget-mb"),
];

/// Defaults of the settings clients ask for on connect.
const DEFAULT_SETTINGS: &[(&str, &str)] = &[
    ("application_name", ""),
    ("client_encoding", "UTF8"),
    ("datestyle", "ISO, MDY"),
    ("default_transaction_isolation", "read committed"),
    ("extra_float_digits", "1"),
    ("integer_datetimes", "on"),
    ("intervalstyle", "postgres"),
    ("is_superuser", "on"),
    ("lc_collate", "C"),
    ("max_identifier_length", "63"),
    ("search_path", "public"),
    ("server_encoding", "UTF8"),
    ("server_version", "16.6"),
    ("server_version_num", "160006"),
    ("standard_conforming_strings", "on"),
    ("statement_timeout", "0"),
    ("timezone", "UTC"),
    ("transaction_isolation", "read committed"),
    ("transaction_read_only", "off"),
];

/// The settings a new session on `engine` starts with.
pub(super) fn initial(engine: &Engine) -> BTreeMap<String, String> {
    let mut variables: BTreeMap<String, String> = DEFAULT_SETTINGS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    // Server settings, shown but not settable per session.
    variables.insert(
        CHECKPOINT_INTERVAL.into(),
        format!("{}ms", engine.checkpoint_interval.as_millis()),
    );
    let budget = match engine
        .snapshot()
        .state_budget
        .as_ref()
        .and_then(|b| b.bounded())
    {
        Some(limit) => format!("{}MB", limit >> 20),
        None => "unlimited".into(),
    };
    variables.insert(MEMORY_BUDGET.into(), budget);
    variables
}

impl Session {
    pub(super) fn show(&self, variable: &[ast::Ident]) -> Result<Output> {
        let name = variable_name(variable);
        match name.as_str() {
            "materialized views" => return Ok(self.list(ObjectKind::MaterializedView, "name")),
            "sources" => return Ok(self.list(ObjectKind::Source, "name")),
            "sinks" => return Ok(self.list(ObjectKind::Sink, "name")),
            "tables" => return Ok(self.list(ObjectKind::Table, "name")),
            "views" => return Ok(self.list(ObjectKind::View, "name")),
            _ => {}
        }
        let key = match name.as_str() {
            "transaction isolation level" => "transaction_isolation".to_string(),
            "time zone" => "timezone".to_string(),
            other => other.to_string(),
        };
        let value = self
            .variables
            .lock()
            .map_err(|_| Error::internal("session settings poisoned"))?
            .get(&key)
            .cloned()
            .ok_or_else(|| {
                Error::plan(
                    "42704",
                    format!("unrecognized configuration parameter \"{name}\""),
                )
            })?;
        let schema = text_schema(&[key.as_str()]);
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(StringArray::from(vec![value]))],
        )?;
        Ok(Output::Rows {
            schema,
            batches: vec![batch],
        })
    }

    pub(super) fn set(&self, set: &ast::Set) -> Result<Output> {
        let mut variables = self
            .variables
            .lock()
            .map_err(|_| Error::internal("session settings poisoned"))?;
        match set {
            ast::Set::SingleAssignment {
                variable, values, ..
            } => {
                let name = variable.to_string().to_ascii_lowercase();
                if let Some((_, flag)) = SERVER_SETTINGS.iter().find(|(n, _)| *n == name) {
                    return Err(Error::plan(
                        "55P02",
                        format!("parameter \"{name}\" cannot be changed now: it is set when Eddy starts ({flag})"),
                    ));
                }
                let value = values
                    .iter()
                    .map(setting_value)
                    .collect::<Vec<_>>()
                    .join(", ");
                variables.insert(name, value);
            }
            ast::Set::SetTimeZone { value, .. } => {
                variables.insert("timezone".into(), setting_value(value));
            }
            _ => {}
        }
        Ok(Output::Command(CommandTag::new("SET")))
    }
}

/// The name `SHOW` was given, lower case, its words joined by spaces.
pub(super) fn variable_name(variable: &[ast::Ident]) -> String {
    variable
        .iter()
        .map(|i| i.value.to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join(" ")
}

fn setting_value(value: &ast::Expr) -> String {
    match value {
        ast::Expr::Value(v) => match &v.value {
            ast::Value::SingleQuotedString(s) | ast::Value::DoubleQuotedString(s) => s.clone(),
            other => other.to_string(),
        },
        ast::Expr::Identifier(ident) => ident.value.clone(),
        other => other.to_string(),
    }
}
