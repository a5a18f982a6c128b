use std::collections::{BTreeMap, VecDeque};

use datafusion::arrow::array::{Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use eddy_state::{Checkpoint, Store, StoreOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

type Model = BTreeMap<(i64, String), i64>;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("a", DataType::Int64, true),
        Field::new("b", DataType::Utf8, true),
    ]))
}

fn read(relation: &Relation) -> Model {
    let mut model = Model::new();
    for changes in relation.contents().expect("contents") {
        add_to(&mut model, &changes);
    }
    model
}

fn add_to(model: &mut Model, changes: &ChangeBatch) {
    let data = changes.data();
    let a = data
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .expect("a");
    let b = data
        .column(1)
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("b");
    for (row, weight) in changes.weights().iter().enumerate() {
        *model
            .entry((a.value(row), b.value(row).to_string()))
            .or_default() += weight;
    }
}

/// The rows of `relation` (keyed by `b`) whose `b` is one of `keys`.
fn read_keys(relation: &Relation, keys: &[String]) -> Model {
    let encoded: Vec<Vec<u8>> = keys
        .iter()
        .map(|k| {
            let value = ScalarValue::Utf8(Some(k.clone()));
            relation
                .encode_key(&[value])
                .expect("encode")
                .expect("a key")
        })
        .collect();
    let mut model = Model::new();
    relation
        .read_chunks(Some(&encoded), &mut |chunk| {
            add_to(&mut model, &relation.decode(chunk.rows(), &chunk.weights)?);
            Ok(())
        })
        .expect("read keys");
    model
}

/// A relation that leaves memory at random moments, over a store whose
/// checkpoints become durable some handovers late, reads like a model
/// multiset after every step; so do clones pinned on the way (a
/// snapshot's contents), while later checkpoints land.
#[test]
fn a_relation_that_leaves_memory_reads_like_one_that_stays() {
    let location = Location {
        id: 7,
        prefix: vec![0xFF],
    };
    let mut on_disk_seeds = 0;
    for seed in 0..16u64 {
        let dir = std::env::temp_dir().join(format!("eddy-relation-{seed}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Arc::new(Store::open(&dir, &StoreOptions::default()).expect("open"));
        let mut rng = StdRng::seed_from_u64(seed);
        // Odd seeds key the rows by `b`, which puts it first in their
        // encoding and stores each under it (one row of each `b`).
        let key: &[usize] = if seed % 2 == 1 { &[1] } else { &[] };
        let mut relation = Relation::keyed(schema(), key).expect("relation");
        let mut model = Model::new();
        let mut pending = Checkpoint::default();
        let mut queue: VecDeque<(u64, Checkpoint)> = VecDeque::new();
        let mut handed = 0u64;
        let mut pinned: Vec<(Relation, Model)> = Vec::new();
        let mut durable: Option<(u64, Arc<eddy_state::StoreSnapshot>)> = None;
        let mut was_on_disk = false;
        for step in 0..80 {
            // Changes: inserts, and deletes of rows there.
            let mut a = Vec::new();
            let mut b = Vec::new();
            let mut weights = Vec::new();
            let mut after = model.clone();
            for _ in 0..rng.random_range(1..6) {
                if !key.is_empty() {
                    // Insert, replace or delete the row of one key.
                    let k = format!("v{}", rng.random_range(0..8));
                    if !b.contains(&k) {
                        let old = after.keys().find(|(_, other)| *other == k).cloned();
                        if let Some(old) = &old {
                            after.remove(old);
                            a.push(old.0);
                            b.push(old.1.clone());
                            weights.push(-1);
                        }
                        if old.is_none() || rng.random_bool(0.6) {
                            let new = (rng.random_range(0..12i64), k.clone());
                            if old.as_ref() != Some(&new) {
                                after.insert(new.clone(), 1);
                                a.push(new.0);
                                b.push(new.1);
                                weights.push(1);
                            }
                        }
                    }
                    continue;
                }
                let row = (
                    rng.random_range(0..12i64),
                    format!("v{}", rng.random_range(0..3)),
                );
                let there = after.get(&row).copied().unwrap_or(0);
                let weight = if there > 0 && rng.random_bool(0.4) {
                    -rng.random_range(1..=there)
                } else {
                    rng.random_range(1..3)
                };
                *after.entry(row.clone()).or_default() += weight;
                a.push(row.0);
                b.push(row.1);
                weights.push(weight);
            }
            after.retain(|_, w| *w != 0);
            let batch = RecordBatch::try_new(
                relation.schema().clone(),
                vec![
                    Arc::new(Int64Array::from(a)),
                    Arc::new(StringArray::from(b)),
                ],
            )
            .expect("batch");
            let changes = ChangeBatch::new(batch, Int64Array::from(weights)).expect("changes");
            relation
                .apply_with(
                    &changes,
                    Some(&mut |row, stored_key, weight| {
                        let row = [&location.prefix[..], row].concat();
                        if key.is_empty() {
                            pending.add_row(location.id, &row, weight);
                        } else {
                            let key = location.prefix.len() + stored_key;
                            pending.set_row(location.id, &row, key, i64::from(weight > 0));
                        }
                    }),
                )
                .expect("apply");
            model = after;
            if rng.random_bool(0.3) && !pending.is_empty() {
                handed += 1;
                queue.push_back((handed, std::mem::take(&mut pending)));
                relation.seal(handed);
            }
            while !queue.is_empty() && rng.random_bool(0.4) {
                let (number, checkpoint) = queue.pop_front().expect("queued");
                store.commit(checkpoint, number).expect("commit");
                durable = Some((number, Arc::new(store.snapshot())));
            }
            if relation.in_memory() && rng.random_bool(0.1) {
                let after = if pending.is_empty() {
                    handed
                } else {
                    handed + 1
                };
                relation.leave(after, location.clone());
            }
            // As the engine does after every commit.
            if let Some((number, snapshot)) = &durable {
                relation.settle(*number, snapshot);
            }
            if rng.random_bool(0.15) {
                pinned.push((relation.clone(), model.clone()));
            }
            was_on_disk |= relation.on_disk_now();
            assert_eq!(read(&relation), model, "seed {seed}, step {step}");
            assert_eq!(
                relation.total(),
                Some(model.values().sum::<i64>()),
                "seed {seed}, step {step}"
            );
            if !key.is_empty() {
                let wanted: Vec<String> = (0..4)
                    .filter(|_| rng.random_bool(0.5))
                    .map(|v| format!("v{v}"))
                    .collect();
                let mut expected = model.clone();
                expected.retain(|(_, b), _| wanted.contains(b));
                assert_eq!(
                    read_keys(&relation, &wanted),
                    expected,
                    "seed {seed}, step {step}, keys {wanted:?}"
                );
            }
            for (i, (old, expected)) in pinned.iter().enumerate() {
                assert_eq!(&read(old), expected, "seed {seed}, step {step}, pinned {i}");
            }
        }
        on_disk_seeds += usize::from(was_on_disk);
        drop((relation, pinned, durable, store));
        let _ = std::fs::remove_dir_all(&dir);
    }
    assert!(
        on_disk_seeds >= 8,
        "only {on_disk_seeds} seeds went on disk"
    );
}

#[test]
fn a_relation_on_disk_refuses_a_negative_count() {
    let dir = std::env::temp_dir().join(format!("eddy-relation-neg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Arc::new(Store::open(&dir, &StoreOptions::default()).expect("open"));
    let location = Location {
        id: 1,
        prefix: Vec::new(),
    };
    let mut relation = Relation::on_disk(
        &Relation::new(schema()).expect("relation"),
        0,
        Arc::new(store.snapshot()),
        location,
        Some(0),
    );
    let batch = RecordBatch::try_new(
        relation.schema().clone(),
        vec![
            Arc::new(Int64Array::from(vec![1])),
            Arc::new(StringArray::from(vec!["x"])),
        ],
    )
    .expect("batch");
    let insert = ChangeBatch::new(batch.clone(), Int64Array::from(vec![1])).expect("insert");
    let delete = ChangeBatch::new(batch, Int64Array::from(vec![-2])).expect("delete");
    relation.apply(&insert).expect("insert");
    assert!(relation.apply(&delete).is_err());
    assert_eq!(read(&relation).len(), 1);
    // Keyed by `b`, a row is stored under its key: deleting another row of
    // a stored row's key is refused, deleting the stored one is not.
    let keyed = Relation::keyed(schema(), &[1]).expect("relation");
    let row = |a: i64, weight: i64| {
        let batch = RecordBatch::try_new(
            keyed.schema().clone(),
            vec![
                Arc::new(Int64Array::from(vec![a])),
                Arc::new(StringArray::from(vec!["x"])),
            ],
        )
        .expect("batch");
        ChangeBatch::new(batch, Int64Array::from(vec![weight])).expect("changes")
    };
    let mut checkpoint = Checkpoint::default();
    let mut stored = keyed.clone();
    stored
        .apply_with(
            &row(1, 1),
            Some(&mut |encoded, key, weight| checkpoint.set_row(2, encoded, key, weight)),
        )
        .expect("insert");
    store.commit(checkpoint, 1).expect("commit");
    let location = Location {
        id: 2,
        prefix: Vec::new(),
    };
    let on_disk = Relation::on_disk(&keyed, 1, Arc::new(store.snapshot()), location, Some(1));
    assert!(on_disk.clone().apply(&row(2, -1)).is_err());
    let mut emptied = on_disk.clone();
    emptied.apply(&row(1, -1)).expect("delete the stored row");
    assert!(read(&emptied).is_empty());
    assert_eq!(read(&on_disk).len(), 1);
    drop((relation, on_disk, emptied, store));
    let _ = std::fs::remove_dir_all(&dir);
}
