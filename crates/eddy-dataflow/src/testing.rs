//! A compact text notation for operator tests.
//!
//! A schema is `"name:type ..."` with types `int`, `str`, `bool`, `float`
//! (all nullable). Changes are rows separated by `;`, each row its values
//! separated by whitespace followed by a signed weight: `"1 a +1; 2 NULL -1"`.
//! [`epoch`] feeds changes to an operator, ends the epoch with a barrier and
//! renders the consolidated output in the same notation, sorted.
#![allow(clippy::expect_used)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::scalar::ScalarValue;

use crate::state::{Spill, StateBudget, StateReader};
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

/// The keys of `saved`: what two operators store alike (values may list
/// the same sets in other orders).
fn keys(saved: &Saved) -> Vec<Vec<u8>> {
    saved.keys().cloned().collect()
}

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
    assert_eq!(keys(&saved_after), keys(&saved));
    Ok(())
}

/// The entries one save wrote (`None`: deleted).
type Writes = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// A store whose saves become durable `lag` saves late, as checkpoints
/// written on their own thread do.
pub(crate) struct LaggingStore {
    durable: Arc<Mutex<Saved>>,
    in_flight: VecDeque<(u64, Writes)>,
    pub(crate) budget: Arc<StateBudget>,
    lag: usize,
}

/// Reads what a [`LaggingStore`] made durable.
struct DurableReader(Arc<Mutex<Saved>>);

impl StateReader for DurableReader {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.0.lock().expect("not poisoned").get(key).cloned())
    }

    fn scan(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let durable = self.0.lock().expect("not poisoned");
        Ok(durable
            .range(prefix.to_vec()..)
            .map_while(|(key, value)| Some((key.strip_prefix(prefix)?.to_vec(), value.clone())))
            .collect())
    }

    fn scan_from(
        &self,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let durable = self.0.lock().expect("not poisoned");
        Ok(durable
            .range([prefix, start].concat()..)
            .map_while(|(key, value)| Some((key.strip_prefix(prefix)?.to_vec(), value.clone())))
            .take(limit)
            .collect())
    }
}

impl LaggingStore {
    pub(crate) fn new(lag: usize, limit: usize) -> Self {
        Self {
            durable: Arc::default(),
            in_flight: VecDeque::new(),
            budget: Arc::new(StateBudget::new(limit)),
            lag,
        }
    }

    pub(crate) fn spill(&self, restored: bool) -> Spill {
        Spill {
            reader: Box::new(DurableReader(self.durable.clone())),
            budget: self.budget.clone(),
            restored,
        }
    }

    pub(crate) fn save(&mut self, operator: &mut dyn Operator) -> Result<()> {
        let save = self.budget.begin_save();
        let mut writes = Vec::new();
        operator.save_state(&mut |key, value| {
            writes.push((key.to_vec(), value.map(<[u8]>::to_vec)));
        })?;
        self.in_flight.push_back((save, writes));
        while self.in_flight.len() > self.lag {
            self.write_one();
        }
        Ok(())
    }

    fn write_one(&mut self) {
        let Some((save, writes)) = self.in_flight.pop_front() else {
            return;
        };
        let mut durable = self.durable.lock().expect("not poisoned");
        for (key, value) in writes {
            match value {
                Some(value) => durable.insert(key, value),
                None => durable.remove(&key),
            };
        }
        self.budget.written(save);
    }
}

/// Feed `epochs` to two new operators from `make`, one keeping all its
/// state and one spilling it under a budget of `limit` bytes into a store
/// `lag` saves behind; after the first `cut` epochs restart the spilling
/// one from what its store made durable (loading the entries it asks for). Checks both
/// emit the same after every epoch, that the restarted one emits nothing
/// by itself, and that in the end its store holds the entries the first
/// one saved;
/// returns the entries let go of and read back. `case` names the run in
/// failures.
pub fn check_spill(
    case: &str,
    make: &dyn Fn() -> Box<dyn Operator>,
    epochs: &[Vec<(usize, ChangeBatch)>],
    cut: usize,
    limit: usize,
    lag: usize,
) -> Result<(u64, u64)> {
    let (before, after) = epochs.split_at(cut);
    let mut store = LaggingStore::new(lag, limit);
    let mut kept = make();
    kept.track_state();
    let mut kept_saved = Saved::new();
    let mut spilling = make();
    spilling.track_state();
    spilling.spill(store.spill(false));
    for (i, steps) in before.iter().enumerate() {
        let expected = epoch(kept.as_mut(), steps.clone())?;
        let got = epoch(spilling.as_mut(), steps.clone())?;
        assert_eq!(got, expected, "{case}: epoch {i}");
        save(kept.as_mut(), &mut kept_saved)?;
        store.save(spilling.as_mut())?;
    }
    let evictions = store.budget.evictions();
    // A restart with everything written loads what the operator asks
    // for; the rest stays on disk until its key comes.
    while !store.in_flight.is_empty() {
        store.write_one();
    }
    drop(spilling);
    let mut restored = make();
    restored.track_state();
    restored.spill(store.spill(true));
    let saved = store.durable.lock().expect("not poisoned").clone();
    let wanted = restored.entries_to_load();
    for (key, value) in &saved {
        let load = wanted
            .as_ref()
            .is_none_or(|prefixes| prefixes.iter().any(|p| key.starts_with(p)));
        if load {
            restored.load_state(key, value)?;
        }
    }
    restored.state_loaded()?;
    assert_eq!(epoch(restored.as_mut(), vec![])?, NOTHING, "{case}");
    for (i, steps) in after.iter().enumerate() {
        let expected = epoch(kept.as_mut(), steps.clone())?;
        let got = epoch(restored.as_mut(), steps.clone())?;
        assert_eq!(got, expected, "{case}: epoch {} after the restart", cut + i);
        save(kept.as_mut(), &mut kept_saved)?;
        store.save(restored.as_mut())?;
    }
    while !store.in_flight.is_empty() {
        store.write_one();
    }
    let durable = store.durable.lock().expect("not poisoned").clone();
    assert_eq!(keys(&durable), keys(&kept_saved), "{case}: stored entries");
    Ok(evictions)
}

#[test]
fn notation_round_trips() -> Result<()> {
    let s = schema("k:int v:str");
    let batch = changes(&s, "2 NULL -1; 1 a +1; 1 a +2; 3 c +1; 3 c -1");
    assert_eq!(render(&s, &[batch])?, ["1 a +3", "2 NULL -1"]);
    assert_eq!(render(&s, &[changes(&s, "")])?, NOTHING);
    Ok(())
}
