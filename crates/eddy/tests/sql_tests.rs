//! Runs every `sql-tests/**/*.slt` file against a real Eddy server over the
//! Postgres wire protocol, once with the simple query protocol and once with
//! the extended one (Parse/Bind/Execute, binary results). Each run gets a
//! fresh server.

mod support;

use std::path::{Path, PathBuf};

use libtest_mimic::{Arguments, Failed, Trial};
use support::{Postgres, Protocol};

fn slt_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            slt_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "slt") {
            out.push(path);
        }
    }
}

fn run(path: PathBuf, protocol: Protocol) -> Result<(), Failed> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let config = eddy::Config::in_memory("127.0.0.1:0");
        let server = eddy::Server::start(&config).await?;
        let addr = server.addr;
        let mut runner = sqllogictest::Runner::new(move || Postgres::connect(addr, protocol));
        let result = runner.run_file_async(&path).await;
        server.shutdown().await?;
        result.map_err(|e| Failed::from(e.display(true).to_string()))
    })
}

fn main() {
    let args = Arguments::from_args();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sql-tests");
    let mut files = Vec::new();
    slt_files(&root, &mut files);
    let mut trials = Vec::new();
    for path in files {
        let name = path
            .strip_prefix(&root)
            .unwrap_or(&path)
            .display()
            .to_string();
        for protocol in [Protocol::Simple, Protocol::Extended] {
            let path = path.clone();
            trials.push(Trial::test(format!("{name}::{protocol:?}"), move || {
                run(path, protocol)
            }));
        }
    }
    libtest_mimic::run(&args, trials).exit();
}
