//! The guest's stderr for a reused instance (wasi:http): a ring that keeps the last bytes
//! written and never refuses a write, so a chatty guest neither fails nor grows memory.
//! After each request the sandbox takes what the request wrote ([`LogTail::take`]) and
//! sends its tail to the host with the response, as an event handler's stderr goes.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

#[derive(Clone)]
pub struct LogTail {
    ring: Arc<Mutex<VecDeque<u8>>>,
    cap: usize,
}

impl LogTail {
    /// Keeps the last `cap` bytes.
    pub fn new(cap: usize) -> Self {
        LogTail {
            ring: Arc::new(Mutex::new(VecDeque::with_capacity(cap.min(4096)))),
            cap,
        }
    }

    fn push(&self, bytes: &[u8]) {
        let mut r = self.ring.lock();
        let bytes = &bytes[bytes.len().saturating_sub(self.cap)..];
        let over = (r.len() + bytes.len()).saturating_sub(self.cap);
        r.drain(..over);
        r.extend(bytes);
    }

    /// What was written since the last take (its last `cap` bytes), leaving the ring empty.
    pub fn take(&self) -> Vec<u8> {
        let mut r = self.ring.lock();
        let out = r.iter().copied().collect();
        r.clear();
        out
    }
}

impl IsTerminal for LogTail {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogTail {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for LogTail {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.push(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }
    fn check_write(&mut self) -> Result<usize, StreamError> {
        // Any amount: the ring drops the oldest bytes instead of refusing.
        Ok(64 << 10)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LogTail {
    async fn ready(&mut self) {}
}

impl AsyncWrite for LogTail {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_bytes_and_never_refuses() {
        let mut t = LogTail::new(8);
        t.write(Bytes::from_static(b"hello ")).unwrap();
        t.write(Bytes::from_static(b"world!")).unwrap();
        assert_eq!(t.take(), b"o world!");
        assert!(t.take().is_empty());
        t.write(Bytes::from(vec![b'x'; 100_000])).unwrap();
        assert_eq!(t.take(), vec![b'x'; 8]);
        assert!(t.check_write().unwrap() > 0);
    }
}
