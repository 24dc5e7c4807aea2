//! The gRPC port's accept loop, in front of tonic: a connection takes a slot of the connection
//! budget (in all and per peer address) or is closed at once, and must finish its opening (the
//! TLS handshake, or a plaintext client's first bytes) within [`OPENING_TIMEOUT`] on a task of
//! its own, so a client that connects and says nothing holds a socket for seconds, not forever,
//! and never delays anyone else's accept.

use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use super::closable::Closable;
use crate::limits::{Budget, Budgets};

/// How long a connection may take to open (TLS handshake, or first bytes in plaintext).
pub(super) const OPENING_TIMEOUT: Duration = Duration::from_secs(10);

/// The connections of `listener` once `open` has opened them, until the stream is dropped;
/// each holds a connection slot while it lives and can be cut by `cut`.
pub(super) fn incoming<S, F, Opened>(
    listener: TcpListener,
    budgets: std::sync::Arc<Budgets>,
    cut: CancellationToken,
    open: F,
) -> ReceiverStream<std::io::Result<S>>
where
    S: Send + 'static,
    F: Fn(Closable) -> Opened + Send + 'static,
    Opened: Future<Output = Option<S>> + Send + 'static,
{
    let (sender, receiver) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = sender.closed() => return,
            };
            let Ok((tcp, peer)) = accepted else {
                // Out of file descriptors, or reset before accept: wait rather than spin.
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            // A refusal is counted by the budget; the client sees the connection closed.
            let Ok(slot) = budgets.acquire(Budget::GrpcConnections, &peer.ip().to_string()) else {
                continue;
            };
            // Without it, a response spanning two TCP segments waits ~40 ms for the client's
            // delayed ACK.
            let _ = tcp.set_nodelay(true);
            let opening = open(Closable::new(tcp, &cut, slot));
            let sender = sender.clone();
            tokio::spawn(async move {
                if let Ok(Some(opened)) = tokio::time::timeout(OPENING_TIMEOUT, opening).await {
                    let _ = sender.send(Ok(opened)).await;
                }
            });
        }
    });
    ReceiverStream::new(receiver)
}

/// A plaintext connection, once its client has sent something.
pub(super) async fn plaintext(connection: Closable) -> Option<Closable> {
    connection.first_bytes().await.ok()?;
    Some(connection)
}
