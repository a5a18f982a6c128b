//! The view oracle's random DML: rows for the three tables, and steps of
//! inserts, updates and deletes that lean on deletes as tables grow.

use std::collections::BTreeSet;

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::Rng;

/// One DML statement. Inserts keep their rows apart so shrinking can drop
/// single rows.
#[derive(Clone, Debug)]
pub enum Stmt {
    Insert {
        table: &'static str,
        rows: Vec<String>,
    },
    Sql(String),
}

impl Stmt {
    pub fn sql(&self) -> String {
        match self {
            Stmt::Insert { table, rows } => {
                format!("INSERT INTO {table} VALUES {}", rows.join(", "))
            }
            Stmt::Sql(sql) => sql.clone(),
        }
    }

    /// Statements on t3 may hit its primary key; that error is expected.
    pub fn may_violate_key(&self) -> bool {
        match self {
            Stmt::Insert { table, .. } => *table == "t3",
            Stmt::Sql(sql) => sql.contains("t3"),
        }
    }
}

fn int_or_null(rng: &mut StdRng, hi: i32, null_pct: u32) -> String {
    if rng.random_ratio(null_pct, 100) {
        "NULL".into()
    } else {
        rng.random_range(0..=hi).to_string()
    }
}

fn text_or_null(rng: &mut StdRng, choices: &[&str]) -> String {
    if rng.random_ratio(15, 100) {
        "NULL".into()
    } else {
        format!("'{}'", choices.choose(rng).unwrap())
    }
}

fn float_or_null(rng: &mut StdRng) -> String {
    if rng.random_ratio(15, 100) {
        "NULL".into()
    } else {
        // Multiples of 0.5: sums are exact whatever the order. A negative
        // zero (the literal -0.0 is an exact numeric, +0 as a double) must
        // group, join and compare equal to 0.0.
        [
            "-1.5",
            "0.0",
            "CAST('-0' AS DOUBLE)",
            "0.5",
            "1.0",
            "2.5",
            "4.0",
        ]
        .choose(rng)
        .unwrap()
        .to_string()
    }
}

const T1_S: &[&str] = &["x", "y", "z"];
const T2_S: &[&str] = &["x", "y", "w"];
const T3_KEYS: i32 = 10;

fn t1_row(rng: &mut StdRng) -> String {
    format!(
        "({}, {}, {}, {})",
        int_or_null(rng, 4, 12),
        int_or_null(rng, 5, 12),
        text_or_null(rng, T1_S),
        float_or_null(rng)
    )
}

fn t2_row(rng: &mut StdRng) -> String {
    format!(
        "({}, {}, {})",
        int_or_null(rng, 4, 12),
        int_or_null(rng, 5, 12),
        text_or_null(rng, T2_S)
    )
}

fn rows(rng: &mut StdRng, n: usize, row: fn(&mut StdRng) -> String) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for _ in 0..n {
        if !out.is_empty() && rng.random_ratio(1, 6) {
            // A duplicate, so multiplicities above one show up.
            let copy = out.choose(rng).unwrap().clone();
            out.push(copy);
        } else {
            out.push(row(rng));
        }
    }
    out
}

/// What the generator knows about the tables before a step.
pub struct TableState {
    pub t1: usize,
    pub t2: usize,
    pub t3_keys: BTreeSet<i32>,
}

fn t3_insert(rng: &mut StdRng, keys: &mut BTreeSet<i32>, n: usize) -> Stmt {
    let mut rows = Vec::new();
    for _ in 0..n {
        let free: Vec<i32> = (0..T3_KEYS).filter(|k| !keys.contains(k)).collect();
        let k = if free.is_empty() || rng.random_ratio(1, 20) {
            // Now and then a duplicate key: the statement must fail as a whole.
            rng.random_range(0..T3_KEYS)
        } else {
            *free.choose(rng).unwrap()
        };
        keys.insert(k);
        rows.push(format!("({k}, {})", int_or_null(rng, 5, 15)));
    }
    Stmt::Insert { table: "t3", rows }
}

pub fn gen_step(rng: &mut StdRng, state: &mut TableState) -> Vec<Stmt> {
    let count = rng.random_range(1..=3);
    let mut out = Vec::new();
    for _ in 0..count {
        let table = rng.random_range(0..100);
        let stmt = if table < 45 {
            gen_t1(rng, state.t1)
        } else if table < 80 {
            gen_t2(rng, state.t2)
        } else {
            gen_t3(rng, &mut state.t3_keys)
        };
        out.push(stmt);
    }
    out
}

/// Insert, update or delete, leaning on deletes when the table is big.
fn pick_op(rng: &mut StdRng, size: usize) -> u32 {
    let (insert, update) = match size {
        0..=4 => (75, 15),
        5..=24 => (40, 35),
        25..=39 => (25, 35),
        _ => (5, 25),
    };
    let roll = rng.random_range(0..100);
    if roll < insert {
        0
    } else if roll < insert + update {
        1
    } else {
        2
    }
}

fn gen_t1(rng: &mut StdRng, size: usize) -> Stmt {
    let x = rng.random_range(0..=5);
    let s = T1_S.choose(rng).unwrap();
    let sql = match pick_op(rng, size) {
        0 => {
            if rng.random_ratio(1, 12) {
                // INSERT ... SELECT, copying from another table.
                return Stmt::Sql(format!(
                    "INSERT INTO t1 SELECT a, c, s, 0.5 FROM t2 WHERE c = {x}"
                ));
            }
            let n = rng.random_range(1..=5);
            return Stmt::Insert {
                table: "t1",
                rows: rows(rng, n, t1_row),
            };
        }
        1 => match rng.random_range(0..8) {
            0 => format!(
                "UPDATE t1 SET b = {} WHERE a = {}",
                int_or_null(rng, 5, 15),
                x % 5
            ),
            1 => format!(
                "UPDATE t1 SET a = {} WHERE b = {x}",
                int_or_null(rng, 4, 20)
            ),
            2 => format!(
                "UPDATE t1 SET s = {}, f = {} WHERE a IS NULL OR b = {x}",
                text_or_null(rng, T1_S),
                float_or_null(rng)
            ),
            3 => format!("UPDATE t1 SET b = (b + 1) % 6 WHERE s = '{s}'"),
            4 => format!(
                "UPDATE t1 SET a = b, b = a WHERE f > {}",
                float_or_null(rng)
            ),
            5 => format!("UPDATE t1 SET f = f + 0.5 WHERE a = {}", x % 5),
            6 => format!("UPDATE t1 SET a = (a + 1) % 5, s = 'y' WHERE b <= {x}"),
            // Changes nothing: a retraction and an insertion that cancel.
            _ => format!("UPDATE t1 SET b = b, s = s WHERE a = {}", x % 5),
        },
        _ => match rng.random_range(0..12) {
            0..=2 => format!("DELETE FROM t1 WHERE a = {}", x % 5),
            3..=4 => format!("DELETE FROM t1 WHERE b > {x} AND s = '{s}'"),
            5..=6 => "DELETE FROM t1 WHERE s IS NULL OR a IS NULL".to_string(),
            7..=8 => format!("DELETE FROM t1 WHERE f < {}", float_or_null(rng)),
            9..=10 => format!("DELETE FROM t1 WHERE b = {x}"),
            _ => "DELETE FROM t1".to_string(),
        },
    };
    Stmt::Sql(sql)
}

fn gen_t2(rng: &mut StdRng, size: usize) -> Stmt {
    let x = rng.random_range(0..=5);
    let s = T2_S.choose(rng).unwrap();
    let sql = match pick_op(rng, size) {
        0 => {
            let n = rng.random_range(1..=5);
            return Stmt::Insert {
                table: "t2",
                rows: rows(rng, n, t2_row),
            };
        }
        1 => match rng.random_range(0..4) {
            0 => format!(
                "UPDATE t2 SET c = {} WHERE a = {}",
                int_or_null(rng, 5, 15),
                x % 5
            ),
            1 => format!(
                "UPDATE t2 SET a = {}, s = {} WHERE c = {x}",
                int_or_null(rng, 4, 15),
                text_or_null(rng, T2_S)
            ),
            2 => "UPDATE t2 SET c = (c + a) % 6 WHERE s IS NOT NULL".to_string(),
            _ => format!("UPDATE t2 SET s = '{s}' WHERE a IS NULL OR c > {x}"),
        },
        _ => match rng.random_range(0..10) {
            0..=2 => format!("DELETE FROM t2 WHERE c = {x}"),
            3..=4 => format!("DELETE FROM t2 WHERE a IS NULL OR s = '{s}'"),
            5..=7 => format!("DELETE FROM t2 WHERE a = {} AND c < {x}", x % 5),
            8 => format!("DELETE FROM t2 WHERE a = {}", x % 5),
            _ => "DELETE FROM t2".to_string(),
        },
    };
    Stmt::Sql(sql)
}

fn gen_t3(rng: &mut StdRng, keys: &mut BTreeSet<i32>) -> Stmt {
    let existing: Vec<i32> = keys.iter().copied().collect();
    let any_key = rng.random_range(0..T3_KEYS);
    let key = existing.choose(rng).copied().unwrap_or(any_key);
    let sql = match pick_op(rng, keys.len() * 3) {
        0 => {
            let n = rng.random_range(1..=3);
            return t3_insert(rng, keys, n);
        }
        1 => match rng.random_range(0..3) {
            0 => format!(
                "UPDATE t3 SET v = {} WHERE k = {key}",
                int_or_null(rng, 5, 20)
            ),
            1 => format!("UPDATE t3 SET v = (v + 1) % 6 WHERE v IS NOT NULL AND k > {any_key}"),
            _ => {
                let free: Vec<i32> = (0..T3_KEYS).filter(|k| !keys.contains(k)).collect();
                match free.choose(rng) {
                    Some(new) => format!("UPDATE t3 SET k = {new} WHERE k = {key}"),
                    None => format!("UPDATE t3 SET v = NULL WHERE k = {key}"),
                }
            }
        },
        _ => match rng.random_range(0..3) {
            0 => format!("DELETE FROM t3 WHERE k = {key}"),
            1 => format!("DELETE FROM t3 WHERE v = {}", rng.random_range(0..=5)),
            _ => "DELETE FROM t3 WHERE v IS NULL".to_string(),
        },
    };
    Stmt::Sql(sql)
}

/// Rows before the first views exist; now and then a table stays empty.
pub fn initial_load(rng: &mut StdRng) -> Vec<Stmt> {
    let mut keys = BTreeSet::new();
    let n1 = rng.random_range(4..=10);
    let n2 = rng.random_range(4..=10);
    let n3 = rng.random_range(2..=5);
    let mut out = Vec::new();
    if !rng.random_ratio(1, 5) {
        out.push(Stmt::Insert {
            table: "t1",
            rows: rows(rng, n1, t1_row),
        });
    }
    if !rng.random_ratio(1, 5) {
        out.push(Stmt::Insert {
            table: "t2",
            rows: rows(rng, n2, t2_row),
        });
    }
    if !rng.random_ratio(1, 5) {
        out.push(t3_insert(rng, &mut keys, n3));
    }
    out
}
