//! The Postgres wire protocol front end: one [`eddy_engine::Session`] per
//! connection, simple and extended query protocols, Arrow ↔ Postgres types.

mod encode;
mod handler;

use std::sync::Arc;

use eddy_engine::Engine;
use tokio::net::TcpListener;
use tracing::{info, warn};

pub use handler::ConnectionHandlers;

/// Accept connections on `listener` until `shutdown` resolves.
pub async fn serve(
    engine: Arc<Engine>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => {
                info!("pgwire listener stopping");
                return Ok(());
            }
            accepted = listener.accept() => {
                let (socket, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        warn!(%error, "accept failed");
                        continue;
                    }
                };
                let engine = engine.clone();
                tokio::spawn(async move {
                    let handlers = match ConnectionHandlers::new(engine) {
                        Ok(handlers) => handlers,
                        Err(error) => {
                            warn!(%peer, %error, "could not open a session");
                            return;
                        }
                    };
                    if let Err(error) = pgwire::tokio::process_socket(socket, None, handlers).await {
                        warn!(%peer, %error, "connection ended with an error");
                    }
                });
            }
        }
    }
}
