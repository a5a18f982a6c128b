//! The oracle over a durable engine that is closed and opened again every
//! few steps: each view then comes back from the data directory (its
//! operators' state and contents, or its inputs again where it does not
//! store its state) and must still equal its query, and keep doing so as
//! DML goes on. Half of the seeds run with a memory budget of 0, so that
//! GROUP BY groups and join rows leave memory at every checkpoint and are
//! read back when their keys change.
//!
//! Knobs: `EDDY_ORACLE_SEED` and `EDDY_ORACLE_ONLY` as for the in-memory
//! run; `EDDY_ORACLE_RESTART_STEPS=<n>` steps per seed (default 12). A
//! mismatch is reported with its seed and step, not shrunk.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use eddy_engine::{DurableOptions, Engine, Session};
use eddy_state::{Store, StoreOptions};
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::shapes::{EXPECTED_UNSUPPORTED, TABLES};
use super::statements::{gen_step, initial_load, TableState};
use super::{check, create_sql, selected_shapes, shape_by_name, Db};

/// Seeds run when `EDDY_ORACLE_SEED` is not set; even positions run
/// without a memory budget, odd ones with a budget of 0.
const SEEDS: &[u64] = &[3, 11];
const STEPS: usize = 12;
/// Steps between restarts.
const RESTART_EVERY: usize = 3;

/// A database in `dir`, created or opened again.
async fn open(dir: &Path, budget: Option<usize>) -> Db {
    // A task of the engine closed just before may hold it for a moment.
    let mut tries = 0;
    let store = loop {
        match Store::open(dir, &StoreOptions::default()) {
            Ok(store) => break store,
            Err(_) if tries < 50 => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(error) => panic!("opening {}: {error}", dir.display()),
        }
    };
    let options = DurableOptions {
        memory_budget: budget,
        ..DurableOptions::default()
    };
    let engine: Arc<Engine> = Engine::open(store, options).await.expect("open");
    let fresh = engine.snapshot().objects.is_empty();
    let db = Db {
        session: Session::new(engine).expect("session"),
    };
    if fresh {
        for sql in TABLES {
            db.exec(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }
    db
}

/// A fresh directory, removed when dropped (after the database in it,
/// which is declared later).
struct TempDir(PathBuf);

impl TempDir {
    fn new(seed: u64) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "eddy-oracle-restarts-{}-{seed}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One seed: failures found, as reports.
async fn run_seed(seed: u64, budget: Option<usize>, steps: usize) -> Vec<String> {
    let temp = TempDir::new(seed);
    let dir = temp.0.clone();
    let mut failures = Vec::new();
    // Under a budget of 0 every stored relation leaves memory: the most
    // relations seen on disk at once.
    let mut most_on_disk = 0;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut db = open(&dir, budget).await;
    for stmt in initial_load(&mut rng) {
        db.apply(&stmt).await.expect("initial load");
    }
    let mut live = Vec::new();
    for name in selected_shapes() {
        let shape = shape_by_name(name);
        match db.exec(&create_sql(shape)).await {
            Ok(_) => live.push(shape),
            Err(e) if e.code == "0A000" && EXPECTED_UNSUPPORTED.contains(&name) => {}
            Err(e) => failures.push(format!(
                "seed {seed}: CREATE of {name} failed: {e}\n  {}",
                create_sql(shape)
            )),
        }
    }
    for step in 1..=steps {
        let mut state = TableState {
            t1: db.count("t1").await,
            t2: db.count("t2").await,
            t3_keys: db.t3_keys().await,
        };
        let stmts = gen_step(&mut rng, &mut state);
        for stmt in &stmts {
            if let Err(e) = db.apply(stmt).await {
                failures.push(format!("seed {seed}, step {step}: {e}"));
                return failures;
            }
        }
        let restarted = step % RESTART_EVERY == 0;
        if restarted {
            drop(db);
            db = open(&dir, budget).await;
        }
        let mut failed = Vec::new();
        for shape in &live {
            if let Err(detail) = check(&db, shape).await {
                failures.push(format!(
                    "seed {seed} (memory budget {budget:?}): view {} differs from its query after step {step}{}\n  {}\n{detail}",
                    shape.name,
                    if restarted { ", just after a restart" } else { "" },
                    create_sql(shape),
                ));
                failed.push(shape.name);
            }
        }
        // A view whose input differs would differ too: check no further.
        live.retain(|s| !failed.contains(&s.name));
        let on_disk = db
            .query("SELECT relations_on_disk FROM eddy_catalog.state_memory")
            .await
            .unwrap_or_default();
        let on_disk: usize = on_disk.keys().find_map(|n| n.parse().ok()).unwrap_or(0);
        most_on_disk = most_on_disk.max(on_disk);
    }
    println!("seed {seed}: at most {most_on_disk} tables and views on disk at once");
    // The three tables and nearly every view store their rows; a budget of
    // 0 leaves them all on disk.
    if budget == Some(0) && most_on_disk < 3 + live.len() / 2 {
        failures.push(format!(
            "seed {seed}: with a memory budget of 0 only {most_on_disk} relations were ever on disk at once"
        ));
    }
    println!(
        "seed {seed}: {} views still equal their queries at the end",
        live.len()
    );
    failures
}

#[test]
fn views_survive_restarts() {
    let seeds: Vec<(u64, Option<usize>)> = match std::env::var("EDDY_ORACLE_SEED") {
        Ok(seed) => {
            let seed = seed.trim().parse().expect("EDDY_ORACLE_SEED must be a u64");
            vec![(seed, None), (seed, Some(0))]
        }
        Err(_) => SEEDS
            .iter()
            .enumerate()
            .map(|(i, seed)| (*seed, (i % 2 == 1).then_some(0)))
            .collect(),
    };
    let steps = std::env::var("EDDY_ORACLE_RESTART_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(STEPS);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut failures = Vec::new();
    for (seed, budget) in seeds {
        let started = std::time::Instant::now();
        failures.extend(runtime.block_on(run_seed(seed, budget, steps)));
        println!(
            "seed {seed} (memory budget {budget:?}): {steps} steps, a restart every {RESTART_EVERY}, {:.1}s",
            started.elapsed().as_secs_f64()
        );
    }
    assert!(
        failures.is_empty(),
        "{} failure(s):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
