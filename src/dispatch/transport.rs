//! The gateway↔sandbox transport: one frame each way per request on the sandbox's Unix
//! socket (`surge_runtime::sandbox::frame`), written and read by the calling task, with a
//! pool of kept-alive connections. A connection goes back to the pool only after its whole
//! response was read (for a streamed response, when its body ends: `stream.rs`), so a
//! pooled connection is always ready for the next request.

use std::io::ErrorKind;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use hyper::{Request, Response};
use parking_lot::Mutex;
use surge_runtime::sandbox::frame;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::time::Instant;

use super::stream::{ReplyBody, Streamed};

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The request never reached the sandbox (nobody listening, or the connection was
    /// already closed). It comes back, so it can go to the sandbox's replacement.
    #[error("the sandbox is not reachable: {reason}")]
    NotDelivered {
        reason: String,
        request: Box<Request<Bytes>>,
    },
    #[error("the sandbox closed the connection: {0}")]
    Broken(String),
    #[error("the response is over {0} bytes")]
    TooLarge(usize),
}

pub struct Endpoint {
    pub socket: PathBuf,
    pub pid: u32,
    /// Idle connections, each with the generation it was opened in.
    idle: Mutex<Vec<(UnixStream, u64)>>,
    /// Bumped by [`Endpoint::drop_idle`]: a connection of an older generation is closed when
    /// its request ends instead of going back to the pool.
    generation: AtomicU64,
}

impl Endpoint {
    pub fn new(socket: PathBuf, pid: u32) -> Self {
        Endpoint {
            socket,
            pid,
            idle: Mutex::new(Vec::new()),
            generation: AtomicU64::new(0),
        }
    }

    /// Send one request and read the response: whole, or its head with a body that reads
    /// the rest as it is polled. The body is capped at `max_response` bytes; `deadline`
    /// bounds a streamed body's reads.
    pub async fn send(
        self: &Arc<Self>,
        req: Request<Bytes>,
        max_response: usize,
        deadline: Instant,
    ) -> Result<Response<ReplyBody>, TransportError> {
        self.send_on(req, max_response, deadline, true).await
    }

    /// As [`Endpoint::send`], on a new connection: after a pooled connection turned out to be
    /// closed, this tells a sandbox that closed one connection from one that is gone.
    pub async fn send_fresh(
        self: &Arc<Self>,
        req: Request<Bytes>,
        max_response: usize,
        deadline: Instant,
    ) -> Result<Response<ReplyBody>, TransportError> {
        self.send_on(req, max_response, deadline, false).await
    }

    /// Close every connection once it is idle: the next requests connect anew, and the
    /// sandbox spreads new connections over the threads it takes them on now.
    pub fn drop_idle(&self) {
        self.generation.fetch_add(1, Ordering::Relaxed);
        self.idle.lock().clear();
    }

    /// An idle connection the sandbox has not closed. An idle connection has nothing to
    /// read: readable means closed (or a sandbox speaking out of turn), and it is dropped.
    fn pooled(&self) -> Option<(UnixStream, u64)> {
        let mut idle = self.idle.lock();
        while let Some((s, g)) = idle.pop() {
            let mut probe = [0u8; 1];
            if matches!(s.try_read(&mut probe), Err(e) if e.kind() == ErrorKind::WouldBlock) {
                return Some((s, g));
            }
        }
        None
    }

    /// A connection whose response was read to its end, back into the pool (unless
    /// [`Endpoint::drop_idle`] ran since it was opened).
    fn give_back(&self, stream: UnixStream, generation: u64) {
        if generation == self.generation.load(Ordering::Relaxed) {
            self.idle.lock().push((stream, generation));
        }
    }

    async fn send_on(
        self: &Arc<Self>,
        req: Request<Bytes>,
        max_response: usize,
        deadline: Instant,
        pooled: bool,
    ) -> Result<Response<ReplyBody>, TransportError> {
        let not_delivered = |reason: String, req: Request<Bytes>| {
            Err(TransportError::NotDelivered {
                reason,
                request: Box::new(req),
            })
        };
        let (mut stream, generation) = match pooled.then(|| self.pooled()).flatten() {
            Some(s) => s,
            None => {
                let generation = self.generation.load(Ordering::Relaxed);
                match UnixStream::connect(&self.socket).await {
                    Ok(s) => (s, generation),
                    Err(e) => return not_delivered(e.to_string(), req),
                }
            }
        };
        let out = frame::encode_request(&req);
        // A write that fails left the sandbox without a whole frame, and it acts only on
        // whole frames: the request was not delivered.
        if let Err(e) = stream.write_all(&out).await {
            return not_delivered(e.to_string(), req);
        }
        let payload = match frame::read(&mut stream, max_response + frame::MAX_HEAD_BYTES).await {
            Ok(Some(Ok(p))) => p,
            Ok(Some(Err(frame::FrameError::TooLarge(..)))) => {
                return Err(TransportError::TooLarge(max_response))
            }
            Ok(Some(Err(e))) => return Err(TransportError::Broken(e.to_string())),
            Ok(None) => return Err(TransportError::Broken("closed before answering".into())),
            Err(e) => return Err(TransportError::Broken(e.to_string())),
        };
        match frame::decode_response(payload).map_err(|e| TransportError::Broken(e.to_string()))? {
            frame::ResponseStart::Whole(resp) => {
                if resp.body().len() > max_response {
                    return Err(TransportError::TooLarge(max_response));
                }
                self.give_back(stream, generation);
                Ok(resp.map(ReplyBody::from))
            }
            frame::ResponseStart::Head(head) => {
                let pool = self.clone();
                let give_back = Box::new(move |s| pool.give_back(s, generation));
                let body = Streamed::new(stream, give_back, max_response, deadline);
                Ok(head.map(|()| ReplyBody::Streamed(Box::new(body))))
            }
        }
    }
}
