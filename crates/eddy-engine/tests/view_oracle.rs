//! View-vs-batch property test.
//!
//! Every query shape below is created as a MATERIALIZED VIEW over three small
//! random tables. Random batches of INSERT, UPDATE and DELETE are then applied
//! and, after each step, the contents Eddy maintains incrementally for every
//! view (`SELECT * FROM view`) are compared with the same query evaluated in
//! batch by DataFusion over the current tables (`SELECT * FROM (<query>) q`).
//! Both sides are compared as multisets of rows rendered to strings, with
//! floats rounded to 6 significant digits.
//!
//! Knobs (environment variables):
//! - `EDDY_ORACLE_SEED=<u64>`: run only this seed (default: a fixed list).
//! - `EDDY_ORACLE_STEPS=<n>`: steps per seed (default 30).
//! - `EDDY_ORACLE_ONLY=<name,name>`: run only these shapes (and their inputs).
//! - `EDDY_ORACLE_KNOWN=1`: also run the shapes listed in [`KNOWN_FAILING`].
//! - `EDDY_ORACLE_NO_SHRINK=1`: report mismatches without shrinking them.
//!
//! On a mismatch the test replays the seed with only the failing view (and
//! the views it reads), finds the first step that fails, then greedily drops
//! statements and inserted rows while the mismatch persists, and prints the
//! minimal case as SQL.
//!
//! `views_survive_restarts` (in `view_oracle/restarts.rs`) runs the same
//! shapes over a durable engine that is closed and opened again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::arrow::array::Array;
use datafusion::scalar::ScalarValue;
use eddy_engine::{Engine, Error, Output, Session};
use futures::FutureExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[path = "view_oracle/restarts.rs"]
mod restarts;
#[path = "view_oracle/shapes.rs"]
mod shapes;
#[path = "view_oracle/statements.rs"]
mod statements;

use self::shapes::{Shape, EXPECTED_UNSUPPORTED, KNOWN_FAILING, SHAPES, TABLES};
use self::statements::{gen_step, initial_load, Stmt, TableState};

/// Seeds run when `EDDY_ORACLE_SEED` is not set.
const DEFAULT_SEEDS: &[u64] = &[0x00ED_D1E5, 7, 42, 1234];
/// Steps of random DML per seed.
const DEFAULT_STEPS: usize = 30;
/// Time one shrink may take before it settles for what it has.
const SHRINK_BUDGET: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// Running SQL and comparing results

/// Rows as a multiset: rendered row -> multiplicity.
type Multiset = BTreeMap<String, i64>;

/// A statement's error: its SQLSTATE, or `PANIC` when Eddy panicked.
struct Failure {
    code: String,
    message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {}", self.code, self.message)
    }
}

/// The message of the last panic caught on this thread (set by the hook
/// installed in the test, which keeps caught panics quiet).
static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);
/// Panic messages already printed once.
static PANICS_SEEN: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

struct Db {
    session: Session,
}

impl Db {
    async fn new() -> Db {
        let engine = Arc::new(Engine::new());
        let session = Session::new(engine).expect("session");
        let db = Db { session };
        for sql in TABLES {
            db.exec(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        db
    }

    /// Run SQL; an error or a panic inside Eddy becomes a [`Failure`].
    async fn exec(&self, sql: &str) -> Result<Vec<Output>, Failure> {
        let result = AssertUnwindSafe(self.session.execute_sql(sql))
            .catch_unwind()
            .await;
        match result {
            Ok((outputs, None)) => Ok(outputs),
            Ok((_, Some(error))) => Err(failure(&error)),
            Err(payload) => {
                let message = LAST_PANIC
                    .lock()
                    .ok()
                    .and_then(|mut p| p.take())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panic".into());
                Err(Failure {
                    code: "PANIC".into(),
                    message: message.replace('\n', " "),
                })
            }
        }
    }

    async fn query(&self, sql: &str) -> Result<Multiset, String> {
        let outputs = self.exec(sql).await.map_err(|e| e.to_string())?;
        let mut rows = Multiset::new();
        for output in outputs {
            let Output::Rows { batches, .. } = output else {
                return Err(format!("{sql}: did not return rows"));
            };
            for batch in batches {
                for row in 0..batch.num_rows() {
                    let mut text = String::new();
                    for (i, column) in batch.columns().iter().enumerate() {
                        if i > 0 {
                            text.push_str(" | ");
                        }
                        text.push_str(&render(column.as_ref(), row)?);
                    }
                    *rows.entry(text).or_default() += 1;
                }
            }
        }
        Ok(rows)
    }

    async fn count(&self, table: &str) -> usize {
        let rows = self
            .query(&format!("SELECT count(*) FROM {table}"))
            .await
            .unwrap();
        rows.keys().next().and_then(|r| r.parse().ok()).unwrap_or(0)
    }

    async fn t3_keys(&self) -> BTreeSet<i32> {
        let rows = self.query("SELECT k FROM t3").await.unwrap();
        rows.keys().filter_map(|k| k.parse().ok()).collect()
    }

    /// Apply one DML statement; a key violation on t3 is expected now and
    /// then, every other error is reported.
    async fn apply(&self, stmt: &Stmt) -> Result<(), String> {
        match self.exec(&stmt.sql()).await {
            Ok(_) => Ok(()),
            Err(e) if e.code == "23505" && stmt.may_violate_key() => Ok(()),
            Err(e) => Err(format!("statement failed: {}\n  error: {e}", stmt.sql())),
        }
    }
}

fn failure(error: &Error) -> Failure {
    Failure {
        code: error.sqlstate().into(),
        message: error.to_string(),
    }
}

fn render(column: &dyn Array, row: usize) -> Result<String, String> {
    if column.is_null(row) {
        return Ok("NULL".into());
    }
    let value = ScalarValue::try_from_array(column, row).map_err(|e| e.to_string())?;
    Ok(match value {
        ScalarValue::Float64(Some(v)) => render_float(v),
        ScalarValue::Float32(Some(v)) => render_float(f64::from(v)),
        ScalarValue::Decimal128(Some(v), _, scale) => {
            render_float(v as f64 / 10f64.powi(scale.into()))
        }
        other => other.to_string(),
    })
}

/// Floats to 6 significant digits, so summation order does not matter.
fn render_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        }
    } else if v.abs() < 1e-9 {
        "0".into()
    } else {
        let text = format!("{v:.5e}");
        // Integral values print as integers, so 3.0 and 3 compare equal.
        if v.fract() == 0.0 && v.abs() < 1e15 {
            format!("{}", v as i64)
        } else {
            text
        }
    }
}

fn show_multiset(rows: &Multiset) -> String {
    if rows.is_empty() {
        return "    (no rows)\n".into();
    }
    let mut out = String::new();
    for (row, n) in rows {
        let _ = writeln!(
            out,
            "    {row}{}",
            if *n == 1 {
                String::new()
            } else {
                format!("   x{n}")
            }
        );
    }
    out
}

/// Expected vs actual, with the difference spelled out.
fn show_diff(expected: &Multiset, actual: &Multiset) -> String {
    let mut missing = Multiset::new();
    let mut extra = Multiset::new();
    let keys: BTreeSet<&String> = expected.keys().chain(actual.keys()).collect();
    for key in keys {
        let e = expected.get(key).copied().unwrap_or(0);
        let a = actual.get(key).copied().unwrap_or(0);
        if e > a {
            missing.insert(key.clone(), e - a);
        } else if a > e {
            extra.insert(key.clone(), a - e);
        }
    }
    format!(
        "  expected (batch query):\n{}  actual (materialized view):\n{}  missing from view:\n{}  extra in view:\n{}",
        show_multiset(expected),
        show_multiset(actual),
        show_multiset(&missing),
        show_multiset(&extra)
    )
}

// ---------------------------------------------------------------------------
// Shapes: placeholders, dependencies, oracle queries

fn shape_by_name(name: &str) -> &'static Shape {
    SHAPES
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no shape named {name}"))
}

/// Names of the views `sql` reads through `{name}` placeholders.
fn placeholders(sql: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = sql;
    while let Some(start) = rest.find('{') {
        let end = rest[start..].find('}').expect("unclosed placeholder") + start;
        out.push(&rest[start + 1..end]);
        rest = &rest[end + 1..];
    }
    out
}

/// The view's own definition: placeholders name the views.
fn view_sql(shape: &Shape) -> String {
    let mut sql = shape.sql.to_string();
    for dep in placeholders(shape.sql) {
        sql = sql.replace(&format!("{{{dep}}}"), dep);
    }
    sql
}

/// The definition with every view it reads inlined, so DataFusion evaluates
/// it from the tables alone.
fn oracle_sql(shape: &Shape) -> String {
    let mut sql = shape.sql.to_string();
    for dep in placeholders(shape.sql) {
        let inner = oracle_sql(shape_by_name(dep));
        sql = sql.replace(&format!("{{{dep}}}"), &format!("({inner})"));
    }
    sql
}

/// The shape and every view it reads, inputs first.
fn with_inputs(name: &str, out: &mut Vec<&'static str>) {
    let shape = shape_by_name(name);
    for dep in placeholders(shape.sql) {
        with_inputs(dep, out);
    }
    if !out.contains(&shape.name) {
        out.push(shape.name);
    }
}

fn create_sql(shape: &Shape) -> String {
    format!(
        "CREATE MATERIALIZED VIEW {} AS {}",
        shape.name,
        view_sql(shape)
    )
}

/// Compare one view with its batch evaluation.
async fn check(db: &Db, shape: &Shape) -> Result<(), String> {
    let actual = db
        .query(&format!("SELECT * FROM {}", shape.name))
        .await
        .map_err(|e| format!("reading the view failed: {e}"))?;
    let expected = db
        .query(&format!("SELECT * FROM ({}) q", oracle_sql(shape)))
        .await
        .map_err(|e| format!("the batch query failed: {e}"))?;
    if actual == expected {
        Ok(())
    } else {
        Err(show_diff(&expected, &actual))
    }
}

// ---------------------------------------------------------------------------
// Replaying and shrinking

/// A replayable case: statements before the views exist, then after.
#[derive(Clone)]
struct Case {
    pre: Vec<Stmt>,
    post: Vec<Vec<Stmt>>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// CREATE MATERIALIZED VIEW failed.
    Create,
    /// A DML statement failed (error or panic).
    Statement,
    /// The view's contents differ from the batch query.
    Mismatch,
}

struct Repro {
    kind: Kind,
    /// 1-based step after which it first fails (0: at CREATE).
    step: usize,
    detail: String,
}

/// Run a case with only `views` created (inputs first, the one under test
/// last). Returns the first failure: a failed CREATE, a failed statement, or
/// (with `compare`) a difference of the last view, checked after every
/// statement.
async fn replay(case: &Case, views: &[&'static str], compare: bool) -> Option<Repro> {
    let db = Db::new().await;
    for stmt in &case.pre {
        let _ = db.apply(stmt).await;
    }
    for name in views {
        if let Err(e) = db.exec(&create_sql(shape_by_name(name))).await {
            return Some(Repro {
                kind: Kind::Create,
                step: 0,
                detail: format!("CREATE MATERIALIZED VIEW {name} failed: {e}"),
            });
        }
    }
    let target = shape_by_name(views.last().unwrap());
    if compare {
        if let Err(detail) = check(&db, target).await {
            return Some(Repro {
                kind: Kind::Mismatch,
                step: 0,
                detail,
            });
        }
    }
    for (i, step) in case.post.iter().enumerate() {
        for stmt in step {
            if let Err(detail) = db.apply(stmt).await {
                return Some(Repro {
                    kind: Kind::Statement,
                    step: i + 1,
                    detail,
                });
            }
            if compare {
                if let Err(detail) = check(&db, target).await {
                    return Some(Repro {
                        kind: Kind::Mismatch,
                        step: i + 1,
                        detail,
                    });
                }
            }
        }
    }
    None
}

/// The candidates one removal away from `case`: whole statements first
/// (latest first), then single rows of multi-row inserts.
fn smaller(case: &Case) -> Vec<Case> {
    // (0 = pre, n = post step n - 1, index in that list)
    let mut slots: Vec<(usize, usize)> = (0..case.pre.len()).map(|i| (0, i)).collect();
    for (s, step) in case.post.iter().enumerate() {
        slots.extend((0..step.len()).map(|i| (s + 1, i)));
    }
    fn list(c: &mut Case, step: usize) -> &mut Vec<Stmt> {
        if step == 0 {
            &mut c.pre
        } else {
            &mut c.post[step - 1]
        }
    }
    let mut out = Vec::new();
    for &(step, i) in slots.iter().rev() {
        let mut c = case.clone();
        list(&mut c, step).remove(i);
        out.push(c);
    }
    for &(step, i) in slots.iter().rev() {
        let mut probe = case.clone();
        let width = match &list(&mut probe, step)[i] {
            Stmt::Insert { rows, .. } if rows.len() > 1 => rows.len(),
            _ => continue,
        };
        for r in (0..width).rev() {
            let mut c = case.clone();
            if let Stmt::Insert { rows, .. } = &mut list(&mut c, step)[i] {
                rows.remove(r);
            }
            out.push(c);
        }
    }
    out
}

/// Shrink a failure of view `name` seen on `case`; returns the report.
async fn shrink(case: &Case, name: &'static str, compare: bool) -> String {
    let mut views = Vec::new();
    with_inputs(name, &mut views);
    let mut out = String::new();
    let Some(first) = replay(case, &views, compare).await else {
        let _ = writeln!(
            out,
            "  (does not reproduce with only this view and its inputs; not shrunk)"
        );
        return out;
    };
    let _ = writeln!(
        out,
        "  with only this view (and its inputs) it first fails after step {} ({:?})",
        first.step, first.kind
    );
    if env_flag("EDDY_ORACLE_NO_SHRINK") {
        let _ = writeln!(out, "  {}", first.detail.replace('\n', "\n  "));
        return out;
    }
    let mut best = Case {
        pre: case.pre.clone(),
        post: case.post[..first.step].to_vec(),
    };
    let mut repro = first;
    let started = Instant::now();
    let mut replays = 0;
    'outer: loop {
        for candidate in smaller(&best) {
            if started.elapsed() > SHRINK_BUDGET {
                let _ = writeln!(out, "  (shrink budget used up after {replays} replays)");
                break 'outer;
            }
            replays += 1;
            if let Some(r) = replay(&candidate, &views, compare).await {
                if r.kind == repro.kind {
                    best = candidate;
                    best.post.truncate(r.step);
                    best.post.retain(|s| !s.is_empty());
                    repro = r;
                    continue 'outer;
                }
            }
        }
        break;
    }
    let _ = writeln!(out, "  minimal case:");
    for sql in TABLES {
        let _ = writeln!(out, "    {sql};");
    }
    for stmt in &best.pre {
        let _ = writeln!(out, "    {};", stmt.sql());
    }
    for view in &views {
        let _ = writeln!(out, "    {};", create_sql(shape_by_name(view)));
    }
    for stmt in best.post.iter().flatten() {
        let _ = writeln!(out, "    {};", stmt.sql());
    }
    if repro.kind == Kind::Mismatch {
        let _ = writeln!(out, "    SELECT * FROM {name};");
    }
    let _ = writeln!(out, "  {}", repro.detail.trim_end().replace('\n', "\n  "));
    out
}

// ---------------------------------------------------------------------------
// The test

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Shapes to run this time, inputs before the views reading them.
fn selected_shapes() -> Vec<&'static str> {
    let include_known = env_flag("EDDY_ORACLE_KNOWN");
    let only: Option<Vec<String>> = std::env::var("EDDY_ORACLE_ONLY").ok().map(|v| {
        v.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    });
    let mut out = Vec::new();
    for shape in SHAPES {
        if let Some(only) = &only {
            if !only.iter().any(|o| o == shape.name) {
                continue;
            }
        }
        if KNOWN_FAILING.contains(&shape.name) && !include_known {
            continue;
        }
        with_inputs(shape.name, &mut out);
    }
    out
}

impl Case {
    /// The same history as seen by a view created after `steps` steps: the
    /// statements before it become its `pre`.
    fn seen_after(&self, steps: usize) -> Case {
        let mut pre = self.pre.clone();
        pre.extend(self.post[..steps].iter().flatten().cloned());
        Case {
            pre,
            post: self.post[steps..].to_vec(),
        }
    }
}

/// A fresh database with the case's history applied and the `live` views
/// created at the steps they were created at.
async fn rebuild(
    case: &Case,
    live: &[&'static Shape],
    created_at: &BTreeMap<&'static str, usize>,
) -> Result<Db, String> {
    let db = Db::new().await;
    for stmt in &case.pre {
        db.apply(stmt).await?;
    }
    for step in 0..=case.post.len() {
        if step > 0 {
            for stmt in &case.post[step - 1] {
                db.apply(stmt).await?;
            }
        }
        for shape in live
            .iter()
            .filter(|s| created_at.get(s.name) == Some(&step))
        {
            db.exec(&create_sql(shape))
                .await
                .map_err(|e| format!("CREATE of {} failed on rebuild: {e}", shape.name))?;
        }
    }
    Ok(db)
}

/// Whether `shape` reads (directly or not) a view in `names`.
fn reads_any(shape: &Shape, names: &BTreeSet<&'static str>) -> Option<&'static str> {
    let mut inputs = Vec::new();
    with_inputs(shape.name, &mut inputs);
    inputs.pop();
    inputs.into_iter().find(|i| names.contains(i))
}

/// One seed's run: the database, its history and the views it maintains.
struct SeedRun {
    seed: u64,
    db: Db,
    case: Case,
    /// Views maintained and checked, in creation order.
    live: Vec<&'static Shape>,
    /// Views not (or no longer) maintained.
    dead: BTreeSet<&'static str>,
    /// After how many steps each view was created.
    created_at: BTreeMap<&'static str, usize>,
    failures: Vec<String>,
}

impl SeedRun {
    fn fail(&mut self, report: String) {
        println!("FAILED {}", report.lines().next().unwrap_or_default());
        self.failures.push(report);
    }

    /// The history a view saw, for shrinking.
    fn case_for(&self, name: &str) -> Case {
        self.case
            .seen_after(self.created_at.get(name).copied().unwrap_or(0))
    }

    async fn rebuild(&mut self) -> bool {
        match rebuild(&self.case, &self.live, &self.created_at).await {
            Ok(db) => {
                self.db = db;
                true
            }
            Err(e) => {
                let seed = self.seed;
                self.fail(format!("seed {seed}: rebuilding the database failed: {e}"));
                false
            }
        }
    }

    /// CREATE the views `names`, now. False when the run cannot go on.
    async fn create(&mut self, names: &[&'static str]) -> bool {
        let seed = self.seed;
        let step = self.case.post.len();
        for name in names {
            let shape = shape_by_name(name);
            if let Some(input) = reads_any(shape, &self.dead) {
                self.dead.insert(shape.name);
                println!("seed {seed}: {name} skipped: its input {input} is not maintained");
                continue;
            }
            match self.db.exec(&create_sql(shape)).await {
                Ok(_) => {
                    if EXPECTED_UNSUPPORTED.contains(name) {
                        println!("note: {name} is in EXPECTED_UNSUPPORTED but now creates fine");
                    }
                    self.live.push(shape);
                    self.created_at.insert(shape.name, step);
                }
                Err(e) if e.code == "0A000" && EXPECTED_UNSUPPORTED.contains(name) => {
                    self.dead.insert(shape.name);
                }
                Err(e) => {
                    self.dead.insert(shape.name);
                    let mut report = format!(
                        "seed {seed}: CREATE of {name} (after step {step}) failed: {e}\n  {}\n",
                        create_sql(shape)
                    );
                    report.push_str(&shrink(&self.case.seen_after(step), shape.name, false).await);
                    self.fail(report);
                    // A panic may leave the engine half-way: start over.
                    if e.code == "PANIC" && !self.rebuild().await {
                        return false;
                    }
                }
            }
        }
        true
    }

    /// Apply one generated step. False when the run cannot go on.
    async fn apply_step(&mut self, stmts: Vec<Stmt>) -> bool {
        let seed = self.seed;
        let step = self.case.post.len() + 1;
        self.case.post.push(stmts.clone());
        let mut failed = None;
        for stmt in &stmts {
            if let Err(e) = self.db.apply(stmt).await {
                failed = Some(e);
                break;
            }
        }
        let Some(error) = failed else {
            return true;
        };
        // Find the views that make the statement fail, report them and go
        // on without them.
        let mut culprits = BTreeSet::new();
        for shape in self.live.clone() {
            if reads_any(shape, &culprits).is_some() {
                culprits.insert(shape.name);
                continue;
            }
            let mut views = Vec::new();
            with_inputs(shape.name, &mut views);
            let case = self.case_for(shape.name);
            if replay(&case, &views, false).await.is_some() {
                culprits.insert(shape.name);
                let mut report = format!(
                    "seed {seed}, step {step}: {error}\n  caused by view {}: {}\n",
                    shape.name,
                    create_sql(shape)
                );
                report.push_str(&shrink(&case, shape.name, false).await);
                self.fail(report);
            }
        }
        if culprits.is_empty() {
            self.fail(format!(
                "seed {seed}, step {step}: {error}\n  (no single view reproduces it)"
            ));
            return false;
        }
        self.live.retain(|s| !culprits.contains(s.name));
        self.dead.extend(culprits);
        self.rebuild().await
    }

    /// Compare every live view with its query.
    async fn check_all(&mut self) {
        let seed = self.seed;
        let step = self.case.post.len();
        let mut failed_now: BTreeSet<&'static str> = BTreeSet::new();
        for shape in self.live.clone() {
            if let Some(input) = reads_any(shape, &failed_now) {
                println!(
                    "seed {seed}: {} no longer checked: its input {input} differs",
                    shape.name
                );
                failed_now.insert(shape.name);
                continue;
            }
            if let Err(detail) = check(&self.db, shape).await {
                failed_now.insert(shape.name);
                let created = self.created_at.get(shape.name).copied().unwrap_or(0);
                let mut report = format!(
                    "seed {seed}: view {} (created after step {created}) differs from its query \
                     after step {step}\n  query: {}\n  statements of step {step}:\n{}{detail}",
                    shape.name,
                    oracle_sql(shape),
                    self.case
                        .post
                        .get(step.wrapping_sub(1))
                        .map(|s| s
                            .iter()
                            .map(|s| format!("    {};\n", s.sql()))
                            .collect::<String>())
                        .unwrap_or_else(|| "    (none)\n".into()),
                );
                if created > 0 {
                    report.push_str("  (steps below count from the view's CREATE)\n");
                }
                report.push_str(&shrink(&self.case_for(shape.name), shape.name, true).await);
                self.fail(report);
            }
        }
        self.live.retain(|s| !failed_now.contains(s.name));
        self.dead.extend(failed_now);
    }
}

async fn run_seed(seed: u64, steps: usize, shapes: &[&'static str]) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let pre = initial_load(&mut rng);
    let mut run = SeedRun {
        seed,
        db: Db::new().await,
        case: Case {
            pre: pre.clone(),
            post: Vec::new(),
        },
        live: Vec::new(),
        dead: BTreeSet::new(),
        created_at: BTreeMap::new(),
        failures: Vec::new(),
    };
    for stmt in &pre {
        if let Err(e) = run.db.apply(stmt).await {
            run.fail(format!("seed {seed}: initial load: {e}"));
            return run.failures;
        }
    }
    // About a third of the views are created half-way, filled from the data
    // present then (views reading a late view are late too).
    let middle = steps / 2;
    let mut late: Vec<&'static str> = Vec::new();
    let mut early: Vec<&'static str> = Vec::new();
    for name in shapes {
        let mut inputs = Vec::new();
        with_inputs(name, &mut inputs);
        inputs.pop();
        if inputs.iter().any(|i| late.contains(i)) || (middle > 0 && rng.random_ratio(1, 3)) {
            late.push(name);
        } else {
            early.push(name);
        }
    }
    if !run.create(&early).await {
        return run.failures;
    }
    run.check_all().await;
    for step in 1..=steps {
        let mut state = TableState {
            t1: run.db.count("t1").await,
            t2: run.db.count("t2").await,
            t3_keys: run.db.t3_keys().await,
        };
        let stmts = gen_step(&mut rng, &mut state);
        if !run.apply_step(stmts).await {
            return run.failures;
        }
        if step == middle && !run.create(&late).await {
            return run.failures;
        }
        run.check_all().await;
    }
    if env_flag("EDDY_ORACLE_VERBOSE") {
        let mut sizes = String::new();
        for shape in &run.live {
            let rows = run
                .db
                .query(&format!("SELECT * FROM {}", shape.name))
                .await
                .unwrap_or_default();
            let _ = write!(sizes, " {}={}", shape.name, rows.values().sum::<i64>());
        }
        println!("seed {seed}: rows at the end:{sizes}");
    }
    run.failures
}

#[test]
fn views_match_batch_queries() {
    let seeds: Vec<u64> = match std::env::var("EDDY_ORACLE_SEED") {
        Ok(seed) => vec![seed.trim().parse().expect("EDDY_ORACLE_SEED must be a u64")],
        Err(_) => DEFAULT_SEEDS.to_vec(),
    };
    let steps = std::env::var("EDDY_ORACLE_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_STEPS);
    let shapes = selected_shapes();
    assert!(SHAPES.len() >= 40);
    println!("{} shapes defined, {} selected", SHAPES.len(), shapes.len());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // Panics inside Eddy are caught and reported as failures; keep them
    // from printing a backtrace each.
    std::panic::set_hook(Box::new(|info| {
        let message = info.to_string();
        if let Ok(mut seen) = PANICS_SEEN.lock() {
            if seen.insert(message.clone()) {
                eprintln!("(caught, reported below) {message}");
            }
        }
        if let Ok(mut last) = LAST_PANIC.lock() {
            *last = Some(message);
        }
    }));
    let started = Instant::now();
    let mut failures = Vec::new();
    for seed in seeds {
        let seed_started = Instant::now();
        failures.extend(runtime.block_on(run_seed(seed, steps, &shapes)));
        println!(
            "seed {seed}: {} shapes, {steps} steps, {:.1}s",
            shapes.len(),
            seed_started.elapsed().as_secs_f64()
        );
    }
    let _ = std::panic::take_hook();
    println!("total {:.1}s", started.elapsed().as_secs_f64());
    if !failures.is_empty() {
        panic!(
            "{} failure(s) (rerun one seed with EDDY_ORACLE_SEED=<seed>):\n\n{}",
            failures.len(),
            failures.join("\n\n")
        );
    }
}
