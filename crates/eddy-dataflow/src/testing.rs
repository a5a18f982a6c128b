//! A compact text notation for operator tests.
//!
//! A schema is `"name:type ..."` with types `int`, `str`, `bool`, `float`
//! (all nullable). Changes are rows separated by `;`, each row its values
//! separated by whitespace followed by a signed weight: `"1 a +1; 2 NULL -1"`.
//! [`epoch`] feeds changes to an operator, ends the epoch with a barrier and
//! renders the consolidated output in the same notation, sorted.
#![allow(clippy::expect_used)]

use std::sync::Arc;

use datafusion::arrow::array::{Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::scalar::ScalarValue;

use crate::{ChangeBatch, Operator, Result};

/// The empty output, for `assert_eq!(epoch(..)?, NOTHING)`.
pub const NOTHING: [&str; 0] = [];

/// A schema from `"k:int v:str"`.
pub fn schema(spec: &str) -> SchemaRef {
    let fields: Vec<Field> = spec
        .split_whitespace()
        .map(|field| {
            let (name, ty) = field.split_once(':').expect("field is name:type");
            let ty = match ty {
                "int" => DataType::Int64,
                "str" => DataType::Utf8,
                "bool" => DataType::Boolean,
                "float" => DataType::Float64,
                other => panic!("unknown type {other}"),
            };
            Field::new(name, ty, true)
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// Changes of `schema` from `"1 a +1; 2 NULL -1"` (empty text: no changes).
pub fn changes(schema: &SchemaRef, text: &str) -> ChangeBatch {
    let rows: Vec<Vec<&str>> = text
        .split(';')
        .map(|row| row.split_whitespace().collect::<Vec<_>>())
        .filter(|row| !row.is_empty())
        .collect();
    if rows.is_empty() {
        return ChangeBatch::empty(schema.clone());
    }
    let width = schema.fields().len();
    let mut weights = Vec::new();
    for row in &rows {
        assert_eq!(
            row.len(),
            width + 1,
            "row {row:?} needs {width} values and a weight"
        );
        let weight = row[width];
        assert!(
            weight.starts_with(['+', '-']),
            "weight {weight} needs a sign"
        );
        weights.push(weight.parse::<i64>().expect("weight is an integer"));
    }
    let columns = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(column, field)| {
            let values = rows.iter().map(|row| match row[column] {
                "NULL" => ScalarValue::try_new_null(field.data_type()),
                text => ScalarValue::try_from_string(text.to_string(), field.data_type()),
            });
            let values = values.collect::<datafusion::error::Result<Vec<_>>>()?;
            ScalarValue::iter_to_array(values)
        })
        .collect::<datafusion::error::Result<Vec<_>>>()
        .expect("values parse as their column types");
    let data = RecordBatch::try_new(schema.clone(), columns).expect("a valid batch");
    ChangeBatch::new(data, Int64Array::from(weights)).expect("one weight per row")
}

/// Column `name` of `schema` as a physical expression.
pub fn col(name: &str, schema: &SchemaRef) -> Arc<dyn PhysicalExpr> {
    datafusion::physical_expr::expressions::col(name, schema).expect("column exists")
}

/// Feed `steps` (input index, changes) to `operator`, then a barrier; the
/// epoch's output, consolidated and rendered as sorted rows.
pub fn epoch(operator: &mut dyn Operator, steps: Vec<(usize, ChangeBatch)>) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for (input, changes) in steps {
        operator.on_changes(input, changes, &mut out)?;
    }
    operator.on_barrier(&mut out)?;
    render(operator.schema(), &out)
}

/// Consolidate `batches` and render each row as `"v1 v2 ... +w"`, sorted.
pub fn render(schema: &SchemaRef, batches: &[ChangeBatch]) -> Result<Vec<String>> {
    let all = ChangeBatch::concat(schema, batches)?.consolidate()?;
    let options = FormatOptions::new().with_null("NULL");
    let formatters = all
        .data()
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let mut rows: Vec<String> = (0..all.num_rows())
        .map(|row| {
            let mut text: Vec<String> = formatters
                .iter()
                .map(|f| f.value(row).to_string())
                .collect();
            text.push(format!("{:+}", all.weights()[row]));
            text.join(" ")
        })
        .collect();
    rows.sort();
    Ok(rows)
}

/// State entries as a store holds them after saves.
pub type Saved = std::collections::BTreeMap<Vec<u8>, Vec<u8>>;

/// Apply what `operator` saves now to `saved`.
pub fn save(operator: &mut dyn Operator, saved: &mut Saved) -> Result<()> {
    operator.save_state(&mut |key, value| match value {
        Some(value) => {
            saved.insert(key.to_vec(), value.to_vec());
        }
        None => {
            saved.remove(key);
        }
    })
}

/// Feed `before` (epochs, at least one: a view's operators save only after
/// the epoch that fills them) to a new operator from `make`, saving its
/// state after each; load the saves into another new one, as a restart does; then
/// check that the loaded one emits nothing by itself and goes on through
/// `after` exactly like the first.
pub fn check_restart(
    make: &dyn Fn() -> Box<dyn Operator>,
    before: Vec<Vec<(usize, ChangeBatch)>>,
    after: Vec<Vec<(usize, ChangeBatch)>>,
) -> Result<()> {
    assert!(!before.is_empty(), "an operator saves after an epoch");
    let mut original = make();
    original.track_state();
    let mut saved = Saved::new();
    for steps in before {
        epoch(original.as_mut(), steps)?;
        save(original.as_mut(), &mut saved)?;
    }
    let mut restored = make();
    restored.track_state();
    for (key, value) in &saved {
        restored.load_state(key, value)?;
    }
    restored.state_loaded()?;
    assert_eq!(epoch(restored.as_mut(), vec![])?, NOTHING);
    assert_eq!(epoch(original.as_mut(), vec![])?, NOTHING);
    let mut saved_after = saved.clone();
    for steps in after {
        let expected = epoch(original.as_mut(), steps.clone())?;
        assert_eq!(epoch(restored.as_mut(), steps)?, expected);
        save(original.as_mut(), &mut saved)?;
        save(restored.as_mut(), &mut saved_after)?;
    }
    // The restored operator's saves keep the store as the first's do.
    let keys = |saved: &Saved| saved.keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&saved_after), keys(&saved));
    Ok(())
}

#[test]
fn notation_round_trips() -> Result<()> {
    let s = schema("k:int v:str");
    let batch = changes(&s, "2 NULL -1; 1 a +1; 1 a +2; 3 c +1; 3 c -1");
    assert_eq!(render(&s, &[batch])?, ["1 a +3", "2 NULL -1"]);
    assert_eq!(render(&s, &[changes(&s, "")])?, NOTHING);
    Ok(())
}
