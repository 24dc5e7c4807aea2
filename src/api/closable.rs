//! A gRPC connection the server can cut when its shutdown deadline passes, holding its slot of
//! the connection budget while it lives.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio_util::sync::CancellationToken;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::limits::Slot;

/// A gRPC connection the server can cut: once `closed` fires, every read and write fails, so the
/// connection and the calls on it end instead of waiting for a client that stopped reading.
pub(super) struct Closable {
    inner: tokio::net::TcpStream,
    closed: Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
    _slot: Slot,
}

impl Closable {
    pub(super) fn new(
        inner: tokio::net::TcpStream,
        closed: &CancellationToken,
        slot: Slot,
    ) -> Closable {
        Closable {
            inner,
            closed: Box::pin(closed.clone().cancelled_owned()),
            _slot: slot,
        }
    }

    /// Waits until the client has sent something (a plaintext connection's first bytes).
    pub(super) async fn first_bytes(&self) -> std::io::Result<()> {
        let mut byte = [0u8; 1];
        match self.inner.peek(&mut byte).await? {
            0 => Err(std::io::ErrorKind::UnexpectedEof.into()),
            _ => Ok(()),
        }
    }

    /// An error once the connection is cut (and a wake-up when it is).
    fn cut(&mut self, cx: &mut Context<'_>) -> Option<std::io::Error> {
        self.closed.as_mut().poll(cx).is_ready().then(|| {
            std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "the server is shutting down",
            )
        })
    }
}

impl tokio::io::AsyncRead for Closable {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if let Some(error) = self.cut(cx) {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Closable {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if let Some(error) = self.cut(cx) {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if let Some(error) = self.cut(cx) {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Connected for Closable {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}
