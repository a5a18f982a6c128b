//! Tests of the aggregate: results under inserts and deletes, restarts
//! from saved state, and groups let go of under a memory budget.

use super::*;
use crate::testing::{changes, check_restart, check_spill, col, epoch, schema, NOTHING};

fn call(function: AggregateFunction, arg: &str, distinct: bool) -> AggregateCall {
    let input = schema("k:int v:int");
    AggregateCall {
        function,
        args: if arg == "*" {
            vec![]
        } else {
            vec![col(arg, &input)]
        },
        distinct,
        filter: None,
        order_by: vec![],
        output_type: DataType::Int64,
        display: format!("{function:?}({arg})"),
    }
}

/// `SELECT [k,] <calls> FROM t(k, v) [GROUP BY k]`; `output` names the
/// result columns.
fn aggregate(grouped: bool, calls: Vec<AggregateCall>, output: &str) -> AggregateOperator {
    let input = schema("k:int v:int");
    let (exprs, types) = if grouped {
        (vec![col("k", &input)], vec![DataType::Int64])
    } else {
        (vec![], vec![])
    };
    AggregateOperator::new(exprs, types, calls, &input, schema(output)).expect("a valid aggregate")
}

/// `SELECT k, v, <calls> FROM t(k, v) GROUP BY k, v`: two key columns,
/// so groups are keyed by their row encoding.
fn by_pairs(calls: Vec<AggregateCall>, output: &str) -> AggregateOperator {
    let input = schema("k:int v:int");
    let keys = vec![col("k", &input), col("v", &input)];
    let types = vec![DataType::Int64, DataType::Int64];
    AggregateOperator::new(keys, types, calls, &input, schema(output)).expect("a valid aggregate")
}

fn count_sum_min_max(grouped: bool) -> AggregateOperator {
    use AggregateFunction::*;
    let calls = vec![
        call(Count, "*", false),
        call(Sum, "v", false),
        call(Min, "v", false),
        call(Max, "v", false),
    ];
    let output = if grouped {
        "k:int n:int s:int lo:int hi:int"
    } else {
        "n:int s:int lo:int hi:int"
    };
    aggregate(grouped, calls, output)
}

#[test]
fn deleting_the_max_reveals_the_next() -> Result<()> {
    let mut op = count_sum_min_max(true);
    let s = schema("k:int v:int");
    let rows = changes(&s, "1 10 +1; 1 30 +1; 1 20 +1; 2 5 +1; 2 NULL +1");
    assert_eq!(
        epoch(&mut op, vec![(0, rows)])?,
        ["1 3 60 10 30 +1", "2 2 5 5 5 +1"]
    );
    let delete_max = changes(&s, "1 30 -1");
    assert_eq!(
        epoch(&mut op, vec![(0, delete_max)])?,
        ["1 2 30 10 20 +1", "1 3 60 10 30 -1"]
    );
    // A duplicate of the min keeps it until both copies are gone.
    let rows = changes(&s, "1 10 +1");
    assert_eq!(
        epoch(&mut op, vec![(0, rows)])?,
        ["1 2 30 10 20 -1", "1 3 40 10 20 +1"]
    );
    let rows = changes(&s, "1 10 -1");
    assert_eq!(
        epoch(&mut op, vec![(0, rows)])?,
        ["1 2 30 10 20 +1", "1 3 40 10 20 -1"]
    );
    let rows = changes(&s, "1 10 -1");
    assert_eq!(
        epoch(&mut op, vec![(0, rows)])?,
        ["1 1 20 20 20 +1", "1 2 30 10 20 -1"]
    );
    Ok(())
}

#[test]
fn group_disappears_when_its_count_reaches_zero() -> Result<()> {
    let mut op = count_sum_min_max(true);
    let s = schema("k:int v:int");
    let rows = changes(&s, "1 10 +1; 1 20 +1; 2 7 +1");
    assert_eq!(
        epoch(&mut op, vec![(0, rows)])?,
        ["1 2 30 10 20 +1", "2 1 7 7 7 +1"]
    );
    // Deleted over two batches of one epoch: one retraction, no new row.
    let steps = vec![(0, changes(&s, "1 10 -1")), (0, changes(&s, "1 20 -1"))];
    assert_eq!(epoch(&mut op, steps)?, ["1 2 30 10 20 -1"]);
    // The group comes back from scratch, with no stale state.
    assert_eq!(
        epoch(&mut op, vec![(0, changes(&s, "1 4 +1"))])?,
        ["1 1 4 4 4 +1"]
    );
    // A group born and gone within one epoch emits nothing.
    assert_eq!(
        epoch(&mut op, vec![(0, changes(&s, "3 1 +1; 3 1 -1"))])?,
        NOTHING
    );
    Ok(())
}

#[test]
fn global_aggregate_has_a_row_without_input() -> Result<()> {
    let mut op = count_sum_min_max(false);
    let s = schema("k:int v:int");
    assert_eq!(epoch(&mut op, vec![])?, ["0 NULL NULL NULL +1"]);
    assert_eq!(epoch(&mut op, vec![])?, NOTHING);
    let rows = changes(&s, "1 10 +1; 2 20 +1");
    assert_eq!(
        epoch(&mut op, vec![(0, rows)])?,
        ["0 NULL NULL NULL -1", "2 30 10 20 +1"]
    );
    // Emptied again: back to the row of no input, not to no row.
    let rows = changes(&s, "1 10 -1; 2 20 -1");
    assert_eq!(
        epoch(&mut op, vec![(0, rows)])?,
        ["0 NULL NULL NULL +1", "2 30 10 20 -1"]
    );
    Ok(())
}

#[test]
fn count_distinct_under_duplicates() -> Result<()> {
    use AggregateFunction::*;
    let calls = vec![
        call(Count, "*", false),
        call(Count, "v", true),
        call(Sum, "v", true),
    ];
    let mut op = aggregate(true, calls, "k:int n:int nd:int sd:int");
    let s = schema("k:int v:int");
    let rows = changes(&s, "1 10 +1; 1 10 +1; 1 20 +2; 1 NULL +1");
    assert_eq!(epoch(&mut op, vec![(0, rows)])?, ["1 5 2 30 +1"]);
    // One of two copies of 10 goes: still two distinct values.
    let rows = changes(&s, "1 10 -1");
    assert_eq!(
        epoch(&mut op, vec![(0, rows)])?,
        ["1 4 2 30 +1", "1 5 2 30 -1"]
    );
    // The last copy goes: 10 leaves the distinct set.
    let rows = changes(&s, "1 10 -1");
    assert_eq!(
        epoch(&mut op, vec![(0, rows)])?,
        ["1 3 1 20 +1", "1 4 2 30 -1"]
    );
    // Both copies of 20 go in one row, and a new value arrives twice.
    let rows = changes(&s, "1 20 -2; 1 30 +1; 1 30 +1");
    assert_eq!(
        epoch(&mut op, vec![(0, rows)])?,
        ["1 3 1 20 -1", "1 3 1 30 +1"]
    );
    Ok(())
}

#[test]
fn unchanged_results_emit_nothing() -> Result<()> {
    use AggregateFunction::*;
    let calls = vec![call(Max, "v", false), call(Count, "v", true)];
    let mut op = aggregate(true, calls, "k:int hi:int nd:int");
    let s = schema("k:int v:int");
    let rows = changes(&s, "1 10 +1; 1 5 +1");
    assert_eq!(epoch(&mut op, vec![(0, rows)])?, ["1 10 2 +1"]);
    // Below the max, and a duplicate: neither result moves.
    let rows = changes(&s, "1 7 +1; 1 7 -1; 1 5 +1");
    assert_eq!(epoch(&mut op, vec![(0, rows)])?, NOTHING);
    let rows = changes(&s, "1 5 -1");
    assert_eq!(epoch(&mut op, vec![(0, rows)])?, NOTHING);
    // No input at all.
    assert_eq!(epoch(&mut op, vec![])?, NOTHING);
    Ok(())
}

/// Random inserts and deletes of present rows `k v`, `epochs` epochs.
fn random_epochs(seed: u64, epochs: usize) -> Vec<Vec<(usize, ChangeBatch)>> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let s = schema("k:int v:int");
    let mut present: Vec<(Option<i64>, Option<i64>)> = Vec::new();
    (0..epochs)
        .map(|_| {
            let mut rows = Vec::new();
            for _ in 0..rng.random_range(0..6) {
                if !present.is_empty() && rng.random_bool(0.4) {
                    let (k, v) = present.swap_remove(rng.random_range(0..present.len()));
                    rows.push((k, v, -1));
                } else {
                    let v = rng.random_bool(0.9).then(|| rng.random_range(0..8));
                    let k = rng.random_bool(0.9).then(|| rng.random_range(0..4));
                    present.push((k, v));
                    rows.push((k, v, 1));
                }
            }
            let text: Vec<String> = rows
                .iter()
                .map(|(k, v, w)| {
                    let text = |x: &Option<i64>| x.map_or("NULL".to_string(), |x| x.to_string());
                    format!("{} {} {w:+}", text(k), text(v))
                })
                .collect();
            vec![(0, changes(&s, &text.join("; ")))]
        })
        .collect()
}

#[test]
fn a_restored_aggregate_goes_on_like_the_original() -> Result<()> {
    use AggregateFunction::*;
    let string_agg = || {
        let mut call = call(StringAgg, "v", false);
        call.args
            .push(datafusion::physical_expr::expressions::lit("|"));
        call.output_type = DataType::Utf8;
        call
    };
    let make_grouped = || -> Box<dyn Operator> {
        let calls = vec![
            call(Count, "*", false),
            call(Sum, "v", false),
            call(Min, "v", false),
            call(Max, "v", false),
            call(Count, "v", true),
            string_agg(),
        ];
        Box::new(aggregate(
            true,
            calls,
            "k:int n:int s:int lo:int hi:int nd:int sa:str",
        ))
    };
    let make_global = || -> Box<dyn Operator> { Box::new(count_sum_min_max(false)) };
    let make_pairs = || -> Box<dyn Operator> {
        let calls = vec![call(Count, "*", false), call(Min, "v", false)];
        Box::new(by_pairs(calls, "k:int v:int n:int lo:int"))
    };
    for seed in 0..40 {
        let epochs = random_epochs(seed, 12);
        let cut = 1 + (seed as usize) % 11;
        let (before, after) = (epochs[..cut].to_vec(), epochs[cut..].to_vec());
        check_restart(&make_grouped, before.clone(), after.clone())?;
        check_restart(&make_global, before.clone(), after.clone())?;
        check_restart(&make_pairs, before, after)?;
    }
    Ok(())
}

#[test]
fn an_aggregate_that_lets_go_of_its_groups_goes_on_like_one_that_keeps_them() -> Result<()> {
    use AggregateFunction::*;
    let make_grouped = || -> Box<dyn Operator> {
        let calls = vec![
            call(Count, "*", false),
            call(Sum, "v", false),
            call(Min, "v", false),
            call(Count, "v", true),
        ];
        Box::new(aggregate(true, calls, "k:int n:int s:int lo:int nd:int"))
    };
    let make_pairs = || -> Box<dyn Operator> {
        let calls = vec![call(Count, "*", false), call(Max, "v", false)];
        Box::new(by_pairs(calls, "k:int v:int n:int hi:int"))
    };
    let (mut evicted, mut reloaded) = (0, 0);
    for seed in 0..60 {
        for make in [&make_grouped as &dyn Fn() -> Box<dyn Operator>, &make_pairs] {
            let epochs = random_epochs(seed, 40);
            // No memory, or room for a few groups.
            let limit = if seed % 2 == 0 { 0 } else { 300 };
            let case = format!("seed {seed}");
            let (out, back) = check_spill(&case, make, &epochs, 30, limit, seed as usize % 3)?;
            evicted += out;
            reloaded += back;
        }
    }
    // The budgets made groups leave memory and come back.
    assert!(
        evicted > 100 && reloaded > 100,
        "{evicted} evicted, {reloaded} read back"
    );
    Ok(())
}
