//! # kelpie-server
//!
//! A Letta-compatible REST API on the Kelpie actor runtime. Agents,
//! standalone blocks and custom tools are actors; every API mutation is one
//! invocation (journaled with the request's `Idempotency-Key`, fenced,
//! atomic); reads come from committed state. See `README.md` and
//! `LETTA_API.md` in this crate.
//!
//! - [`config`]: flags, `KELPIE_*` variables and the config file.
//! - [`app`]: the runtimes over one store, admission and draining,
//!   idempotency, snapshot reads.
//! - [`agent`]: the actors, including the agent loop (one step per
//!   invocation).
//! - [`routes`]: the HTTP API.
//! - [`serve`]: listening, signals and graceful shutdown.

pub mod agent;
pub mod app;
pub mod config;
pub mod ids;
pub mod metrics;
pub mod ops;
pub mod records;
pub mod render;
pub mod routes;
pub mod tools;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::Request;
use futures::future::BoxFuture;
use tower::Layer;
use tower_http::normalize_path::NormalizePathLayer;

pub use app::{App, StartError};
pub use config::{Args, ServerConfig};

/// Serves `app` on `listener` until `stop` completes, then drains: from
/// that instant new requests get 503 with `Retry-After`, in-flight ones
/// finish (up to the drain timeout), the actors stop and the store closes.
/// Returns whether every in-flight request finished.
pub async fn serve(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    stop: BoxFuture<'static, ()>,
) -> std::io::Result<bool> {
    let router = routes::router(app.clone());
    // `/v1/agents/` and `/v1/agents` are the same route, as in Letta.
    let service = NormalizePathLayer::trim_trailing_slash().layer(router);
    let (closed_tx, closed_rx) = futures::channel::oneshot::channel::<()>();
    // Small responses (SSE events above all) go out at once, not after
    // Nagle's algorithm waits for an ACK.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
    });
    let server = axum::serve(listener, axum::ServiceExt::<Request>::into_make_service(service)).with_graceful_shutdown(
        async move {
            let _ = closed_rx.await;
        },
    );
    let (done_tx, done_rx) = futures::channel::oneshot::channel();
    let _server = app.env.spawner.spawn(
        "http-server",
        Box::pin(async move {
            let _ = done_tx.send(server.await);
        }),
    );
    stop.await;
    tracing::info!("shutdown requested: draining");
    let finished = app.drain().await;
    // Stop accepting; with every request finished, the open connections
    // are idle and close at once.
    let _ = closed_tx.send(());
    if finished {
        match done_rx.await {
            Ok(result) => result?,
            Err(_) => return Err(std::io::Error::other("HTTP server task ended without a result")),
        }
    }
    tracing::info!(finished, "stopped");
    Ok(finished)
}

/// Completes on SIGTERM or SIGINT.
pub fn shutdown_signal() -> BoxFuture<'static, ()> {
    Box::pin(async {
        let interrupt = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut terminate) => {
                    tokio::select! {
                        _ = interrupt => {}
                        _ = terminate.recv() => {}
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for SIGTERM; only SIGINT stops the server");
                    let _ = interrupt.await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = interrupt.await;
        }
    })
}

/// Binds `config.listen`.
pub async fn bind(config: &ServerConfig) -> std::io::Result<(tokio::net::TcpListener, SocketAddr)> {
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}
