//! `eddy`: start the server.

use clap::Parser;
use eddy::{Config, Server};
use tracing::{error, info};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let config = Config::parse();
    let server = match Server::start(&config).await {
        Ok(server) => server,
        Err(err) => {
            error!(addr = %config.pg_addr, error = %err, "could not start");
            return std::process::ExitCode::FAILURE;
        }
    };
    info!(
        "connect with: psql -h {} -p {} -U eddy",
        server.addr.ip(),
        server.addr.port()
    );
    wait_for_signal().await;
    info!("shutting down");
    match server.shutdown().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            error!(error = %err, "shutdown failed");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
