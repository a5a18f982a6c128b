//! Durability of tables, views over them and the catalog, with Eddy as a
//! child process killed with SIGKILL at random moments.
//!
//! A client issues DML over pgwire and keeps a model of what every
//! acknowledged statement did. After each kill Eddy is started again on
//! the same data directory; the statement that was in flight (sent, not
//! acknowledged) is looked up to see whether it committed (it may have
//! either way, but wholly or not at all), then every table must equal the
//! model and every materialized view the result of its query over the
//! model. `EDDY_CRASH_SEED` repeats a run; `EDDY_CRASH_KILLS` (default 20)
//! makes it longer. The loop runs Eddy with a memory budget of 0, so GROUP
//! BY groups leave memory after each checkpoint and are read back from the
//! data directory when a statement changes them again.

#![allow(clippy::expect_used, clippy::unwrap_used)]

#[allow(dead_code)]
mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use support::process::{copy_live, crash_kills, crash_seed, tail, temp_dir, EddyProcess};
use support::server::rows;
use tokio_postgres::Client;

const OWNERS: i32 = 7;
const KINDS: i32 = 5;
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Keep no checkpointed operator state in memory.
const NO_MEMORY: [&str; 2] = ["--memory-budget-mb", "0"];

const SCHEMA: &str = "
    CREATE TABLE accounts (id BIGINT PRIMARY KEY, owner INT NOT NULL, amount BIGINT NOT NULL);
    CREATE TABLE events (id BIGINT NOT NULL, kind INT NOT NULL);
    CREATE MATERIALIZED VIEW totals AS
        SELECT owner, count(*) AS n, sum(amount) AS total FROM accounts GROUP BY owner;
    CREATE MATERIALIZED VIEW kinds AS SELECT kind, count(*) AS n FROM events GROUP BY kind;
    CREATE MATERIALIZED VIEW rich AS
        SELECT a.id, a.owner, e.kind FROM accounts a JOIN events e ON a.id = e.id
        WHERE a.amount % 3 = 0;
    CREATE MATERIALIZED VIEW top_owners AS
        SELECT owner, total FROM totals ORDER BY total DESC, owner LIMIT 3;
";

/// What the acknowledged statements add up to.
#[derive(Debug, Clone, Default, PartialEq)]
struct Model {
    accounts: BTreeMap<i64, (i32, i64)>,
    events: BTreeMap<i64, i32>,
}

/// One statement of the workload, with what it does to the model.
#[derive(Debug, Clone)]
enum Statement {
    Open {
        id: i64,
        owner: i32,
        amount: i64,
    },
    Set {
        id: i64,
        amount: i64,
    },
    Close {
        id: i64,
    },
    Events {
        rows: Vec<(i64, i32)>,
    },
    /// An INSERT of a key the table has: refused with 23505, changes
    /// nothing.
    Duplicate {
        id: i64,
        owner: i32,
        amount: i64,
    },
}

impl Statement {
    fn sql(&self) -> String {
        match self {
            Statement::Open { id, owner, amount } | Statement::Duplicate { id, owner, amount } => {
                format!("INSERT INTO accounts VALUES ({id}, {owner}, {amount})")
            }
            Statement::Set { id, amount } => {
                format!("UPDATE accounts SET amount = {amount} WHERE id = {id}")
            }
            Statement::Close { id } => format!("DELETE FROM accounts WHERE id = {id}"),
            Statement::Events { rows } => {
                let values: Vec<String> =
                    rows.iter().map(|(id, k)| format!("({id}, {k})")).collect();
                format!("INSERT INTO events VALUES {}", values.join(", "))
            }
        }
    }

    fn apply(&self, model: &mut Model) {
        match self {
            Statement::Open { id, owner, amount } => {
                model.accounts.insert(*id, (*owner, *amount));
            }
            Statement::Set { id, amount } => {
                if let Some(account) = model.accounts.get_mut(id) {
                    account.1 = *amount;
                }
            }
            Statement::Close { id } => {
                model.accounts.remove(id);
            }
            Statement::Events { rows } => {
                model.events.extend(rows.iter().copied());
            }
            Statement::Duplicate { .. } => {}
        }
    }
}

/// Draws statements; ids and amounts are never reused, so whether an
/// in-doubt statement committed can be read off the tables.
struct Workload {
    rng: StdRng,
    next_id: i64,
    next_event: i64,
    next_amount: i64,
}

impl Workload {
    fn next(&mut self, model: &Model) -> Statement {
        let existing = |rng: &mut StdRng| {
            let ids: Vec<i64> = model.accounts.keys().copied().collect();
            (!ids.is_empty()).then(|| ids[rng.random_range(0..ids.len())])
        };
        self.next_amount += 1 + self.rng.random_range(0..5);
        let amount = self.next_amount;
        match self.rng.random_range(0..11) {
            0..=3 => {
                self.next_id += 1;
                Statement::Open {
                    id: self.next_id,
                    owner: self.rng.random_range(0..OWNERS),
                    amount,
                }
            }
            4..=5 => match existing(&mut self.rng) {
                Some(id) => Statement::Set { id, amount },
                None => self.events(),
            },
            6 => match existing(&mut self.rng) {
                Some(id) => Statement::Close { id },
                None => self.events(),
            },
            // An id used before: a duplicate key while its account is
            // open, an account opened again once it was closed.
            10 if self.next_id > 0 => {
                let id = self.rng.random_range(1..=self.next_id);
                let owner = self.rng.random_range(0..OWNERS);
                match model.accounts.contains_key(&id) {
                    true => Statement::Duplicate { id, owner, amount },
                    false => Statement::Open { id, owner, amount },
                }
            }
            _ => self.events(),
        }
    }

    fn events(&mut self) -> Statement {
        let count = self.rng.random_range(1..=4);
        let rows = (0..count)
            .map(|_| {
                self.next_event += 1;
                // Event ids run like account ids, so the join has matches.
                (self.next_event, self.rng.random_range(0..KINDS))
            })
            .collect();
        Statement::Events { rows }
    }
}

/// The model and the statement sent but not acknowledged, shared with the
/// task that sends statements.
#[derive(Default)]
struct Progress {
    model: Model,
    in_doubt: Option<Statement>,
    acknowledged: u64,
    /// Duplicate keys refused.
    duplicates: u64,
    /// The model after each acknowledged statement (for the torn-copy test).
    history: Vec<Model>,
}

/// Send statements until the connection breaks (the process is killed).
async fn drive(client: Client, workload: Arc<Mutex<Workload>>, progress: Arc<Mutex<Progress>>) {
    loop {
        let statement = {
            let progress = progress.lock().unwrap();
            workload.lock().unwrap().next(&progress.model)
        };
        progress.lock().unwrap().in_doubt = Some(statement.clone());
        let result = client.simple_query(&statement.sql()).await;
        if let Statement::Duplicate { id, .. } = &statement {
            match &result {
                Ok(_) => panic!("a duplicate key was accepted: account {id}"),
                Err(error) if error.code().map(|c| c.code()) == Some("23505") => {
                    let mut progress = progress.lock().unwrap();
                    progress.in_doubt = None;
                    progress.acknowledged += 1;
                    progress.duplicates += 1;
                    continue;
                }
                Err(_) => {}
            }
        }
        match result {
            Ok(_) => {
                let mut progress = progress.lock().unwrap();
                statement.apply(&mut progress.model);
                progress.in_doubt = None;
                progress.acknowledged += 1;
                let snapshot = progress.model.clone();
                progress.history.push(snapshot);
            }
            Err(error) => {
                let closed = error.is_closed()
                    || error.code().is_none()
                    || error.to_string().contains("connection");
                assert!(closed, "{}: {error}", statement.sql());
                return;
            }
        }
    }
}

/// Whether `statement` (sent before a kill, not acknowledged) committed,
/// read off the recovered tables. Panics if it committed in part.
async fn committed(client: &Client, statement: &Statement, model: &Model) -> bool {
    match statement {
        Statement::Open { id, .. } => {
            !rows(client, &format!("SELECT id FROM accounts WHERE id = {id}"))
                .await
                .is_empty()
        }
        Statement::Set { id, amount } => {
            let found = rows(
                client,
                &format!("SELECT amount FROM accounts WHERE id = {id}"),
            )
            .await;
            let before = model.accounts.get(id).map(|a| a.1.to_string());
            if found.first() == Some(&amount.to_string()) {
                true
            } else {
                assert_eq!(found.first(), before.as_ref(), "account {id} after a kill");
                false
            }
        }
        Statement::Close { id } => {
            rows(client, &format!("SELECT id FROM accounts WHERE id = {id}"))
                .await
                .is_empty()
        }
        Statement::Duplicate { id, .. } => {
            let found = rows(
                client,
                &format!("SELECT owner, amount FROM accounts WHERE id = {id}"),
            )
            .await;
            let before = model.accounts.get(id).map(|(o, a)| format!("{o} {a}"));
            assert_eq!(
                found.first(),
                before.as_ref(),
                "account {id} after a refused duplicate"
            );
            false
        }
        Statement::Events { rows: batch } => {
            // Event ids are new, so the rows are there in full or not at all.
            let ids: Vec<String> = batch.iter().map(|(id, _)| id.to_string()).collect();
            let found = rows(
                client,
                &format!(
                    "SELECT id, kind FROM events WHERE id IN ({}) ORDER BY id",
                    ids.join(", ")
                ),
            )
            .await;
            let all: Vec<String> = batch.iter().map(|(i, k)| format!("{i} {k}")).collect();
            if found.is_empty() {
                false
            } else {
                assert_eq!(
                    found, all,
                    "a multi-row INSERT committed in part after a kill"
                );
                true
            }
        }
    }
}

/// Every table equals `model` and every view its query over `model`.
async fn check(client: &Client, model: &Model, context: &str) {
    let accounts: Vec<String> = model
        .accounts
        .iter()
        .map(|(id, (owner, amount))| format!("{id} {owner} {amount}"))
        .collect();
    assert_eq!(
        rows(client, "SELECT id, owner, amount FROM accounts ORDER BY id").await,
        accounts,
        "accounts {context}"
    );
    // Reads by key (a seek once the table is on disk) and counts (no
    // decoding), of keys there and not.
    assert_eq!(
        rows(client, "SELECT count(*) FROM accounts").await,
        [model.accounts.len().to_string()],
        "count of accounts {context}"
    );
    let last = model.accounts.keys().last().copied().unwrap_or(0);
    let probes: Vec<i64> = model
        .accounts
        .keys()
        .step_by(7)
        .copied()
        .chain([0, last + 1])
        .collect();
    for id in &probes {
        let expected: Vec<String> = model
            .accounts
            .get(id)
            .map(|(owner, amount)| format!("{owner} {amount}"))
            .into_iter()
            .collect();
        let query = format!("SELECT owner, amount FROM accounts WHERE id = {id}");
        assert_eq!(rows(client, &query).await, expected, "{query} {context}");
    }
    let list: Vec<String> = probes.iter().map(|id| id.to_string()).collect();
    let expected: Vec<String> = probes
        .iter()
        .filter(|id| model.accounts.contains_key(id))
        .map(|id| id.to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let query = format!(
        "SELECT id::text FROM accounts WHERE id IN ({}) ORDER BY 1",
        list.join(", ")
    );
    assert_eq!(rows(client, &query).await, expected, "{query} {context}");
    let mut events: Vec<String> = model
        .events
        .iter()
        .map(|(id, kind)| format!("{id} {kind}"))
        .collect();
    events.sort();
    let mut stored = rows(client, "SELECT id, kind FROM events").await;
    stored.sort();
    assert_eq!(stored, events, "events {context}");

    let mut totals: BTreeMap<i32, (i64, i64)> = BTreeMap::new();
    for (owner, amount) in model.accounts.values() {
        let t = totals.entry(*owner).or_default();
        t.0 += 1;
        t.1 += amount;
    }
    let mut top: Vec<(i64, i32)> = totals.iter().map(|(o, (_, s))| (-*s, *o)).collect();
    top.sort();
    let top: Vec<String> = top
        .iter()
        .take(3)
        .map(|(s, o)| format!("{o} {}", -s))
        .collect();
    let totals: Vec<String> = totals
        .iter()
        .map(|(o, (n, s))| format!("{o} {n} {s}"))
        .collect();
    assert_eq!(
        rows(client, "SELECT owner, n, total FROM totals ORDER BY owner").await,
        totals,
        "view totals {context}"
    );
    // The view's contents are stored by its key (owner): reads by key seek
    // once it is on disk; owners -1 and OWNERS have no accounts.
    for owner in -1..=OWNERS {
        let expected: Vec<String> = totals
            .iter()
            .filter(|row| row.split(' ').next() == Some(owner.to_string().as_str()))
            .cloned()
            .collect();
        let query = format!("SELECT owner, n, total FROM totals WHERE owner = {owner}");
        assert_eq!(rows(client, &query).await, expected, "{query} {context}");
    }
    let query = "SELECT owner, n, total FROM totals WHERE owner IN (0, 2, 3, 99) ORDER BY owner";
    let expected: Vec<String> = totals
        .iter()
        .filter(|row| ["0", "2", "3"].contains(&row.split(' ').next().unwrap_or("")))
        .cloned()
        .collect();
    assert_eq!(rows(client, query).await, expected, "{query} {context}");
    assert_eq!(
        rows(
            client,
            "SELECT owner, total FROM top_owners ORDER BY total DESC, owner"
        )
        .await,
        top,
        "view top_owners {context}"
    );
    let mut kinds: BTreeMap<i32, i64> = BTreeMap::new();
    for kind in model.events.values() {
        *kinds.entry(*kind).or_default() += 1;
    }
    let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
    assert_eq!(
        rows(client, "SELECT kind, n FROM kinds ORDER BY kind").await,
        kinds,
        "view kinds {context}"
    );
    let mut rich: Vec<String> = Vec::new();
    for (id, kind) in &model.events {
        if let Some((owner, amount)) = model.accounts.get(id) {
            if amount % 3 == 0 {
                rich.push(format!("{id} {owner} {kind}"));
            }
        }
    }
    rich.sort();
    let mut found = rows(client, "SELECT id, owner, kind FROM rich").await;
    found.sort();
    assert_eq!(found, rich, "view rich {context}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_dml_survives_sigkill_loop() {
    let seed = crash_seed();
    let kills = crash_kills();
    println!("crash loop: seed {seed}, {kills} kills (EDDY_CRASH_SEED={seed} repeats it)");
    let dir = temp_dir("crash-dml");
    let data = dir.join("data");
    let log = dir.join("eddy.log");
    let mut rng = StdRng::seed_from_u64(seed);
    let workload = Arc::new(Mutex::new(Workload {
        rng: StdRng::seed_from_u64(seed ^ 0x5eed),
        next_id: 0,
        next_event: 0,
        next_amount: 0,
    }));
    let progress = Arc::new(Mutex::new(Progress::default()));

    let mut process = EddyProcess::spawn_with(&data, &log, &NO_MEMORY);
    let client = process.ready(START_TIMEOUT).await;
    client
        .batch_execute(SCHEMA)
        .await
        .expect("create the schema");
    let mut process = Some((process, client));
    let mut killed = 0;
    let mut killed_starting = 0;
    while killed < kills {
        let (running, client) = match process.take() {
            Some(running) => running,
            None => {
                let mut running = EddyProcess::spawn_with(&data, &log, &NO_MEMORY);
                if rng.random_bool(0.15) {
                    // Kill it while it recovers.
                    let delay = rng.random_range(0..150);
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                    running.kill();
                    killed += 1;
                    killed_starting += 1;
                    continue;
                }
                let client = running.ready(START_TIMEOUT).await;
                let context = format!("after kill {killed} (seed {seed})");
                let in_doubt = progress.lock().unwrap().in_doubt.take();
                if let Some(statement) = in_doubt {
                    let model = progress.lock().unwrap().model.clone();
                    if committed(&client, &statement, &model).await {
                        let mut p = progress.lock().unwrap();
                        statement.apply(&mut p.model);
                        let snapshot = p.model.clone();
                        p.history.push(snapshot);
                    }
                }
                let model = progress.lock().unwrap().model.clone();
                check(&client, &model, &context).await;
                (running, client)
            }
        };
        let driver = tokio::spawn(drive(client, workload.clone(), progress.clone()));
        let delay = rng.random_range(5..400);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        running.kill();
        killed += 1;
        driver.await.expect("the driver task");
    }

    let mut running = EddyProcess::spawn_with(&data, &log, &NO_MEMORY);
    let client = running.ready(START_TIMEOUT).await;
    let in_doubt = progress.lock().unwrap().in_doubt.take();
    if let Some(statement) = in_doubt {
        let model = progress.lock().unwrap().model.clone();
        if committed(&client, &statement, &model).await {
            statement.apply(&mut progress.lock().unwrap().model);
        }
    }
    let (mut model, acknowledged) = {
        let p = progress.lock().unwrap();
        (p.model.clone(), p.acknowledged)
    };
    check(&client, &model, &format!("at the end (seed {seed})")).await;
    // Change every account of two owners in turn: each statement's
    // checkpoint lets go of the groups the one before changed, and the next
    // reads them back.
    let owners: Vec<i32> = {
        let mut owners: Vec<i32> = model.accounts.values().map(|(o, _)| *o).collect();
        owners.sort_unstable();
        owners.dedup();
        owners.into_iter().take(2).collect()
    };
    for round in 0..3 {
        for owner in &owners {
            let ids: Vec<i64> = model
                .accounts
                .iter()
                .filter(|(_, (o, _))| o == owner)
                .map(|(id, _)| *id)
                .collect();
            for id in ids {
                let statement = Statement::Set {
                    id,
                    amount: 1_000_000 + round,
                };
                client
                    .batch_execute(&statement.sql())
                    .await
                    .expect("update an account");
                statement.apply(&mut model);
            }
        }
    }
    check(
        &client,
        &model,
        &format!("after the last updates (seed {seed})"),
    )
    .await;
    assert_eq!(
        rows(&client, "SHOW memory_budget").await,
        ["0MB"],
        "the budget Eddy runs with"
    );
    let memory = rows(
        &client,
        "SELECT keys_evicted > 0, keys_read_back > 0, relations_on_disk > 0 FROM eddy_catalog.state_memory",
    )
    .await;
    assert_eq!(
        memory,
        ["t t t"],
        "groups left memory and came back, and tables and views were read from disk: {:?}",
        rows(&client, "SELECT * FROM eddy_catalog.state_memory").await
    );
    // The accounts' rows, and so their primary key, are on disk: a
    // duplicate key is found there.
    assert_eq!(
        rows(
            &client,
            "SELECT name, place FROM eddy_catalog.relation_memory
               WHERE name IN ('accounts', 'totals') ORDER BY name"
        )
        .await,
        ["accounts disk", "totals disk"]
    );
    let (id, _) = model.accounts.iter().next().expect("an account");
    let error = client
        .simple_query(&format!("INSERT INTO accounts VALUES ({id}, 0, 1)"))
        .await
        .expect_err("a duplicate key");
    assert_eq!(error.code().map(|c| c.code()), Some("23505"), "{error}");
    let duplicates = progress.lock().unwrap().duplicates;
    assert!(duplicates > 0, "the workload tried no duplicate key");
    println!(
        "crash loop: {duplicates} duplicate keys refused; {killed} kills ({killed_starting} during recovery), {acknowledged} statements acknowledged, {} accounts, {} events: all there; last run's state memory (budget, bytes, evicted, read back, relations on disk): {:?}",
        model.accounts.len(),
        model.events.len(),
        rows(&client, "SELECT * FROM eddy_catalog.state_memory").await
    );
    assert!(
        acknowledged >= u64::from(kills),
        "too few statements were acknowledged to test anything ({acknowledged}); log:\n{}",
        tail(&log)
    );
    assert!(!model.accounts.is_empty() && !model.events.is_empty());
    drop(running);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A copy of the data directory taken file by file while Eddy writes (what
/// a crash that lost unsynced writes leaves) opens, and holds the state
/// after some acknowledged statement no earlier than the copy's start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_copy_of_the_data_directory_recovers_a_committed_state() {
    let seed = crash_seed();
    println!("torn copy: seed {seed}");
    let dir = temp_dir("torn");
    let data = dir.join("data");
    let log = dir.join("eddy.log");
    let mut rng = StdRng::seed_from_u64(seed);
    let workload = Arc::new(Mutex::new(Workload {
        rng: StdRng::seed_from_u64(seed ^ 0x70e2),
        next_id: 0,
        next_event: 0,
        next_amount: 0,
    }));
    let progress = Arc::new(Mutex::new(Progress::default()));
    let (process, client) = EddyProcess::start(&data, &log, START_TIMEOUT).await;
    client
        .batch_execute(SCHEMA)
        .await
        .expect("create the schema");
    progress.lock().unwrap().history.push(Model::default());
    let driver = tokio::spawn(drive(client, workload, progress.clone()));
    let mut copies = Vec::new();
    for round in 0..3 {
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..300))).await;
        let before = progress.lock().unwrap().history.len() - 1;
        let copy = dir.join(format!("copy-{round}"));
        copy_live(&data, &copy);
        copies.push((copy, before));
    }
    // Let the statement in flight during the last copy be acknowledged, so
    // that every state a copy can hold is in the history.
    tokio::time::sleep(Duration::from_millis(300)).await;
    process.kill();
    driver.await.expect("the driver task");
    let history = progress.lock().unwrap().history.clone();
    for (copy, before) in copies {
        let copy_log = dir.join(format!(
            "{}.log",
            copy.file_name().unwrap().to_string_lossy()
        ));
        let (running, client) = EddyProcess::start(&copy, &copy_log, START_TIMEOUT).await;
        let found = state(&client).await;
        let matched = history
            .iter()
            .enumerate()
            .skip(before)
            .find(|(_, model)| **model == found)
            .map(|(i, _)| i);
        let Some(index) = matched else {
            panic!(
                "the copy {} holds no state that was committed after the copy began (seed {seed}); {} accounts, {} events",
                copy.display(),
                found.accounts.len(),
                found.events.len()
            );
        };
        check(&client, &history[index], &format!("in {}", copy.display())).await;
        println!(
            "torn copy {}: state after statement {index} (copy began after statement {before})",
            copy.display()
        );
        running.kill();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The tables as a model.
async fn state(client: &Client) -> Model {
    let mut model = Model::default();
    for row in rows(client, "SELECT id, owner, amount FROM accounts").await {
        let v: Vec<i64> = row.split(' ').map(|x| x.parse().unwrap()).collect();
        model.accounts.insert(v[0], (v[1] as i32, v[2]));
    }
    for row in rows(client, "SELECT id, kind FROM events").await {
        let v: Vec<i64> = row.split(' ').map(|x| x.parse().unwrap()).collect();
        model.events.insert(v[0], v[1] as i32);
    }
    model
}

/// The catalog survives a clean restart too, and so does `eddy_catalog.checkpoints`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_and_checkpoints_survive_a_restart() {
    let dir = temp_dir("catalog");
    let data = dir.join("data");
    let log = dir.join("eddy.log");
    let (process, client) = EddyProcess::start(&data, &log, START_TIMEOUT).await;
    client
        .batch_execute(
            "CREATE TABLE t (k INT PRIMARY KEY, v TEXT DEFAULT 'none');
             CREATE VIEW plain AS SELECT k FROM t WHERE k > 1;
             CREATE MATERIALIZED VIEW m AS SELECT count(*) AS n FROM t;
             CREATE TABLE gone (x INT);
             INSERT INTO t (k) VALUES (1), (2), (3);
             DROP TABLE gone;",
        )
        .await
        .expect("setup");
    let before = rows(&client, "SELECT epoch FROM eddy_catalog.checkpoints").await;
    assert_eq!(before.len(), 1, "one last checkpoint");
    process.kill();
    let (process, client) = EddyProcess::start(&data, &log, START_TIMEOUT).await;
    assert_eq!(
        rows(&client, "SELECT k, v FROM t ORDER BY k").await,
        ["1 none", "2 none", "3 none"]
    );
    assert_eq!(
        rows(&client, "SELECT k FROM plain ORDER BY k").await,
        ["2", "3"]
    );
    assert_eq!(rows(&client, "SELECT n FROM m").await, ["3"]);
    let error = client
        .simple_query("SELECT * FROM gone")
        .await
        .expect_err("dropped");
    assert_eq!(error.code().map(|c| c.code()), Some("42P01"));
    // The primary key is enforced over the recovered rows.
    let error = client
        .simple_query("INSERT INTO t VALUES (2, 'again')")
        .await
        .expect_err("duplicate key");
    assert_eq!(error.code().map(|c| c.code()), Some("23505"));
    assert_eq!(
        rows(&client, "SELECT epoch FROM eddy_catalog.checkpoints").await,
        before,
        "the last checkpoint is read back"
    );
    client
        .batch_execute("INSERT INTO t VALUES (4, 'four')")
        .await
        .expect("insert");
    let after = rows(
        &client,
        "SELECT epoch, bytes > 0, duration_ms IS NOT NULL FROM eddy_catalog.checkpoints",
    )
    .await;
    let epoch = |row: &str| -> u64 { row.split(' ').next().unwrap().parse().unwrap() };
    assert!(
        epoch(&after[0]) > epoch(&before[0]),
        "{after:?} after {before:?}"
    );
    assert!(after[0].ends_with(" t t"), "{after:?}");
    process.kill();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A write that fails in a view rebuilds the views over the table from
/// their inputs; what they store of their state is rewritten with them, so
/// a restart loads them as they were, and they go on from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_rebuilt_after_a_failed_write_restart_exactly() {
    let dir = temp_dir("rebuilt");
    let data = dir.join("data");
    let log = dir.join("eddy.log");
    let (process, client) = EddyProcess::start(&data, &log, START_TIMEOUT).await;
    client
        .batch_execute(
            "CREATE TABLE t (k INT, v INT);
             CREATE MATERIALIZED VIEW m AS
               SELECT k, count(*) AS n, sum(100 / v) AS s, max(v) AS hi FROM t GROUP BY k;
             CREATE MATERIALIZED VIEW top AS SELECT k, v FROM t ORDER BY v DESC, k LIMIT 2;
             INSERT INTO t VALUES (1, 1), (1, 2), (2, 4);",
        )
        .await
        .expect("setup");
    let error = client
        .simple_query("INSERT INTO t VALUES (2, 0), (3, 50)")
        .await
        .expect_err("division by zero");
    assert_eq!(error.code().map(|c| c.code()), Some("22012"));
    client
        .batch_execute("INSERT INTO t VALUES (1, 5); DELETE FROM t WHERE v = 2;")
        .await
        .expect("writes after the failed one");
    let expected_m = ["1 2 120 5", "2 1 25 4"];
    let expected_top = ["1 5", "2 4"];
    assert_eq!(
        rows(&client, "SELECT k, n, s, hi FROM m ORDER BY k").await,
        expected_m
    );
    assert_eq!(
        rows(&client, "SELECT k, v FROM top ORDER BY v DESC").await,
        expected_top
    );
    process.kill();

    let (process, client) = EddyProcess::start(&data, &log, START_TIMEOUT).await;
    let context = tail(&log);
    assert_eq!(
        rows(&client, "SELECT k, n, s, hi FROM m ORDER BY k").await,
        expected_m,
        "m after the restart; log:\n{context}"
    );
    assert_eq!(
        rows(&client, "SELECT k, v FROM top ORDER BY v DESC").await,
        expected_top,
        "top after the restart"
    );
    client
        .batch_execute("DELETE FROM t WHERE k = 1; INSERT INTO t VALUES (2, 10);")
        .await
        .expect("writes after the restart");
    assert_eq!(
        rows(&client, "SELECT k, n, s, hi FROM m ORDER BY k").await,
        ["2 2 35 10"]
    );
    assert_eq!(
        rows(&client, "SELECT k, v FROM top ORDER BY v DESC").await,
        ["2 10", "2 4"]
    );
    process.kill();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A datagen connector table and a view over a nexmark source, killed
/// three times while they generate, go on where they stopped: right after
/// each restart the views hold at least what they held before a `FLUSH`
/// that preceded the kill (a generator started over would have them begin again from
/// nothing), and at the end they equal the same generators run once in
/// memory, every row once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generators_go_on_after_a_restart() {
    const ROWS: i64 = 6000;
    let definitions = format!(
        "CREATE TABLE readings (id BIGINT, v INT)
           WITH (connector = 'datagen', fields.id.kind = 'sequence', fields.id.start = '1',
                 fields.id.end = '{ROWS}', datagen.rows.per.second = '1500');
         CREATE MATERIALIZED VIEW reading_totals AS
           SELECT count(*) AS n, count(DISTINCT id) AS ids, sum(v) AS total FROM readings;
         CREATE SOURCE bid WITH (connector = 'nexmark', nexmark.table.type = 'Bid',
                                 nexmark.event.num = '20000', nexmark.events.per.second = '5000');
         CREATE MATERIALIZED VIEW bid_totals AS
           SELECT count(*) AS n, sum(price) AS total, count(DISTINCT auction) AS auctions FROM bid;"
    );
    let views = "SELECT * FROM reading_totals CROSS JOIN bid_totals";
    let (_server, memory) = support::server::start().await;
    memory
        .batch_execute(&definitions)
        .await
        .expect("generators in memory");
    let want = rows(ended(&memory).await, views).await;
    assert!(want[0].starts_with(&format!("{ROWS} {ROWS} ")), "{want:?}");

    let dir = temp_dir("generators");
    let (data, log) = (dir.join("data"), dir.join("eddy.log"));
    let (mut eddy, mut client) = EddyProcess::start(&data, &log, START_TIMEOUT).await;
    client
        .batch_execute(&definitions)
        .await
        .expect("generators");
    let counts = |row: &str| -> (i64, i64) {
        let v: Vec<&str> = row.split(' ').collect();
        (v[0].parse().unwrap(), v[3].parse().unwrap())
    };
    for round in 0..3 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        // What the views hold now, FLUSH makes durable (and more, as the
        // generators go on meanwhile).
        let before = counts(&rows(&client, views).await[0]);
        client.batch_execute("FLUSH").await.expect("flush");
        eddy.kill();
        (eddy, client) = EddyProcess::start(&data, &log, START_TIMEOUT).await;
        let after = counts(&rows(&client, views).await[0]);
        assert!(
            after.0 >= before.0 && after.1 >= before.1,
            "round {round}: (readings, bids) went from {before:?} to {after:?} across a restart; log:\n{}",
            tail(&log)
        );
    }
    assert_eq!(rows(ended(&client).await, views).await, want);
}

/// `client` once every generator it reads has ended and what they made is
/// in the views.
async fn ended(client: &Client) -> &Client {
    let started = std::time::Instant::now();
    while rows(
        client,
        "SELECT count(*) FROM eddy_catalog.source_progress WHERE status <> 'ended'",
    )
    .await
        != ["0"]
    {
        assert!(
            started.elapsed() < START_TIMEOUT,
            "the generators did not end"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    client.batch_execute("FLUSH").await.expect("flush");
    client
}
