//! Tests of the join: every kind under changes on both sides, restarts
//! from saved state, and keys let go of under a memory budget.

use super::*;
use crate::testing::{changes, check_restart, check_spill, col, epoch, schema, NOTHING};

fn left() -> SchemaRef {
    schema("a:int x:str")
}

fn right() -> SchemaRef {
    schema("b:int y:str")
}

/// `left(a, x) <kind> JOIN right(b, y) ON a = b`.
fn join(kind: JoinKind, nulls_equal: bool) -> JoinOperator {
    let output = match kind {
        JoinKind::LeftSemi | JoinKind::LeftAnti => left(),
        JoinKind::RightSemi | JoinKind::RightAnti => right(),
        _ => schema("a:int x:str b:int y:str"),
    };
    JoinOperator::new(
        kind,
        vec![col("a", &left())],
        vec![col("b", &right())],
        vec![DataType::Int64],
        nulls_equal,
        None,
        left(),
        right(),
        output,
        format!("{kind:?}"),
    )
    .expect("a valid join")
}

fn l(text: &str) -> (usize, ChangeBatch) {
    (0, changes(&left(), text))
}

fn r(text: &str) -> (usize, ChangeBatch) {
    (1, changes(&right(), text))
}

#[test]
fn inner_with_changes_on_both_sides_in_one_epoch() -> Result<()> {
    let mut op = join(JoinKind::Inner, false);
    let steps = vec![l("1 l1 +1; 2 l2 +1"), r("1 r1 +1; 3 r3 +1"), l("3 l3 +2")];
    assert_eq!(epoch(&mut op, steps)?, ["1 l1 1 r1 +1", "3 l3 3 r3 +2"]);
    // Right first, then left; a left delete and a right insert on one key.
    let steps = vec![r("1 r1b +1; 2 r2 +3"), l("1 l1 -1; 2 l2b +1")];
    assert_eq!(
        epoch(&mut op, steps)?,
        ["1 l1 1 r1 -1", "2 l2 2 r2 +3", "2 l2b 2 r2 +3"]
    );
    // r1b met l1 above, and l1's deletion cancelled that pair.
    assert_eq!(
        epoch(&mut op, vec![l("1 l9 +1")])?,
        ["1 l9 1 r1 +1", "1 l9 1 r1b +1"]
    );
    Ok(())
}

#[test]
fn left_join_pads_while_unmatched() -> Result<()> {
    let mut op = join(JoinKind::Left, false);
    assert_eq!(epoch(&mut op, vec![l("1 l +2")])?, ["1 l NULL NULL +2"]);
    // A match appears: the padded row is retracted.
    assert_eq!(
        epoch(&mut op, vec![r("1 r +1")])?,
        ["1 l 1 r +2", "1 l NULL NULL -2"]
    );
    // A second match changes nothing about padding.
    assert_eq!(epoch(&mut op, vec![r("1 s +1")])?, ["1 l 1 s +2"]);
    assert_eq!(epoch(&mut op, vec![r("1 r -1")])?, ["1 l 1 r -2"]);
    // The last match goes: the padded row comes back.
    assert_eq!(
        epoch(&mut op, vec![r("1 s -1")])?,
        ["1 l 1 s -2", "1 l NULL NULL +2"]
    );
    // Match and unmatch within one epoch: nothing.
    assert_eq!(epoch(&mut op, vec![r("1 t +1"), r("1 t -1")])?, NOTHING);
    // The left row goes while unmatched.
    assert_eq!(epoch(&mut op, vec![l("1 l -2")])?, ["1 l NULL NULL -2"]);
    // Right rows without left rows emit nothing.
    assert_eq!(epoch(&mut op, vec![r("5 z +1")])?, NOTHING);
    Ok(())
}

#[test]
fn full_join_pads_both_sides() -> Result<()> {
    let mut op = join(JoinKind::Full, false);
    let steps = vec![l("1 l +1; 2 m +1"), r("2 r +1; 3 s +1")];
    assert_eq!(
        epoch(&mut op, steps)?,
        ["1 l NULL NULL +1", "2 m 2 r +1", "NULL NULL 3 s +1"]
    );
    assert_eq!(
        epoch(&mut op, vec![l("2 m -1")])?,
        ["2 m 2 r -1", "NULL NULL 2 r +1"]
    );
    let steps = vec![l("3 n +1"), r("1 q +1")];
    assert_eq!(
        epoch(&mut op, steps)?,
        [
            "1 l 1 q +1",
            "1 l NULL NULL -1",
            "3 n 3 s +1",
            "NULL NULL 3 s -1"
        ]
    );
    Ok(())
}

#[test]
fn semi_join_emits_each_row_once_while_matched() -> Result<()> {
    let mut op = join(JoinKind::LeftSemi, false);
    assert_eq!(epoch(&mut op, vec![l("1 l +2; 2 m +1")])?, NOTHING);
    assert_eq!(epoch(&mut op, vec![r("1 r +1")])?, ["1 l +2"]);
    assert_eq!(epoch(&mut op, vec![r("1 s +3")])?, NOTHING);
    assert_eq!(epoch(&mut op, vec![r("1 r -1")])?, NOTHING);
    assert_eq!(epoch(&mut op, vec![r("1 s -3")])?, ["1 l -2"]);
    // A left row arriving into an existing match.
    assert_eq!(epoch(&mut op, vec![r("2 t +1"), l("2 m +1")])?, ["2 m +2"]);
    assert_eq!(epoch(&mut op, vec![l("2 m -2")])?, ["2 m -2"]);
    Ok(())
}

#[test]
fn anti_join_emits_rows_while_unmatched() -> Result<()> {
    let mut op = join(JoinKind::LeftAnti, false);
    assert_eq!(
        epoch(&mut op, vec![l("1 l +2; 2 m +1")])?,
        ["1 l +2", "2 m +1"]
    );
    assert_eq!(epoch(&mut op, vec![r("1 r +1")])?, ["1 l -2"]);
    assert_eq!(epoch(&mut op, vec![r("1 s +1"), r("1 r -1")])?, NOTHING);
    assert_eq!(epoch(&mut op, vec![r("1 s -1")])?, ["1 l +2"]);
    assert_eq!(epoch(&mut op, vec![l("1 l -2")])?, ["1 l -2"]);
    Ok(())
}

#[test]
fn right_semi_and_anti_mirror_the_left_ones() -> Result<()> {
    let mut semi = join(JoinKind::RightSemi, false);
    assert_eq!(epoch(&mut semi, vec![r("1 r +1")])?, NOTHING);
    assert_eq!(epoch(&mut semi, vec![l("1 l +1")])?, ["1 r +1"]);
    assert_eq!(epoch(&mut semi, vec![l("1 l -1")])?, ["1 r -1"]);

    let mut anti = join(JoinKind::RightAnti, false);
    assert_eq!(epoch(&mut anti, vec![r("1 r +1")])?, ["1 r +1"]);
    assert_eq!(epoch(&mut anti, vec![l("1 l +1")])?, ["1 r -1"]);
    assert_eq!(epoch(&mut anti, vec![l("1 l -1")])?, ["1 r +1"]);
    Ok(())
}

#[test]
fn null_keys_never_match() -> Result<()> {
    let mut inner = join(JoinKind::Inner, false);
    assert_eq!(
        epoch(&mut inner, vec![l("NULL l +1"), r("NULL r +1")])?,
        NOTHING
    );

    let mut left_join = join(JoinKind::Left, false);
    let steps = vec![l("NULL l +1"), r("NULL r +1")];
    assert_eq!(epoch(&mut left_join, steps)?, ["NULL l NULL NULL +1"]);
    assert_eq!(epoch(&mut left_join, vec![r("NULL s +1")])?, NOTHING);
    assert_eq!(
        epoch(&mut left_join, vec![l("NULL l -1")])?,
        ["NULL l NULL NULL -1"]
    );

    let mut full = join(JoinKind::Full, false);
    let steps = vec![l("NULL l +1"), r("NULL r +1")];
    assert_eq!(
        epoch(&mut full, steps)?,
        ["NULL NULL NULL r +1", "NULL l NULL NULL +1"]
    );

    let mut anti = join(JoinKind::LeftAnti, false);
    let steps = vec![r("NULL r +1"), l("NULL l +1")];
    assert_eq!(epoch(&mut anti, steps)?, ["NULL l +1"]);
    assert_eq!(epoch(&mut anti, vec![l("NULL l -1")])?, ["NULL l -1"]);
    Ok(())
}

#[test]
fn null_keys_match_when_nulls_are_equal() -> Result<()> {
    let mut inner = join(JoinKind::Inner, true);
    let steps = vec![l("NULL l +1; 1 m +1"), r("NULL r +1")];
    assert_eq!(epoch(&mut inner, steps)?, ["NULL l NULL r +1"]);

    let mut anti = join(JoinKind::LeftAnti, true);
    assert_eq!(epoch(&mut anti, vec![l("NULL l +1")])?, ["NULL l +1"]);
    assert_eq!(epoch(&mut anti, vec![r("NULL r +1")])?, ["NULL l -1"]);
    Ok(())
}

/// `count` epochs of one to three random changes each, on either side,
/// over keys NULL and 1..keys, deleting rows that are there.
fn random_epochs(seed: u64, count: usize, keys: u32) -> Vec<Vec<(usize, ChangeBatch)>> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut present: [Vec<String>; 2] = Default::default();
    (0..count)
        .map(|_| {
            (0..rng.random_range(1..4))
                .map(|_| {
                    let side = rng.random_range(0..2);
                    let rows = &mut present[side];
                    let row = if !rows.is_empty() && rng.random_bool(0.4) {
                        let row = rows.swap_remove(rng.random_range(0..rows.len()));
                        format!("{row} -1")
                    } else {
                        let key = match rng.random_range(0..keys) {
                            0 => "NULL".to_string(),
                            k => k.to_string(),
                        };
                        let row = format!("{key} v{}", rng.random_range(0..3));
                        rows.push(row.clone());
                        format!("{row} +1")
                    };
                    if side == 0 {
                        l(&row)
                    } else {
                        r(&row)
                    }
                })
                .collect()
        })
        .collect()
}

const KINDS: [JoinKind; 8] = [
    JoinKind::Inner,
    JoinKind::Left,
    JoinKind::Right,
    JoinKind::Full,
    JoinKind::LeftSemi,
    JoinKind::LeftAnti,
    JoinKind::RightSemi,
    JoinKind::RightAnti,
];

#[test]
fn a_restored_join_goes_on_like_the_original() -> Result<()> {
    for seed in 0..30u64 {
        let epochs = random_epochs(seed, 10, 4);
        let cut = 1 + seed as usize % 9;
        for kind in KINDS {
            for nulls_equal in [false, true] {
                let make = || -> Box<dyn Operator> { Box::new(join(kind, nulls_equal)) };
                check_restart(&make, epochs[..cut].to_vec(), epochs[cut..].to_vec())?;
            }
        }
    }
    Ok(())
}

#[test]
fn a_join_that_lets_go_of_its_keys_goes_on_like_one_that_keeps_them() -> Result<()> {
    let (mut evicted, mut reloaded) = (0, 0);
    for seed in 0..24u64 {
        let epochs = random_epochs(seed, 40, 8);
        // No memory, or room for a few keys.
        let limit = if seed % 2 == 0 { 0 } else { 600 };
        for kind in KINDS {
            for nulls_equal in [false, true] {
                let make = || -> Box<dyn Operator> { Box::new(join(kind, nulls_equal)) };
                let case = format!("seed {seed}, {kind:?}, nulls equal {nulls_equal}");
                let (out, back) = check_spill(&case, &make, &epochs, 30, limit, seed as usize % 3)?;
                evicted += out;
                reloaded += back;
            }
        }
    }
    // The budgets made keys leave memory and come back.
    assert!(
        evicted > 1000 && reloaded > 1000,
        "{evicted} evicted, {reloaded} read back"
    );
    Ok(())
}
