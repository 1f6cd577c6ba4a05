//! A response body on its way from a sandbox to the client: whole (the common case, one
//! frame), or streamed, read off the sandbox's connection frame by frame as the client
//! takes it (`surge_runtime::sandbox::frame`: a head, pieces, an end with the sandbox's
//! verdict). hyper pulls the pieces, so a slow client slows the read, the sandbox's write
//! and in the end the guest: nothing is buffered beyond one piece.
//!
//! A streamed body holds what its request holds until it ends (the activator's permit, the
//! load level, the version's hold): the instance is busy until the last piece. Whoever
//! holds such things hands them over with [`ReplyBody::on_end`]; they are released once,
//! when the body ends, fails or is dropped (the client went away).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, SizeHint};
use surge_runtime::exec::Outcome;
use surge_runtime::sandbox::{frame, protocol};
use tokio::net::UnixStream;
use tokio::time::Instant;

/// How a streamed body ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ended {
    /// Every piece, and the sandbox's verdict `ok`.
    Ok,
    /// The sandbox's verdict: the call failed after its head went out (a trap, a timeout,
    /// the memory limit, a body over `max_body`).
    Failed { outcome: Outcome, message: String },
    /// The sandbox stopped answering, spoke out of turn, or ran past the host's deadline.
    Broken(String),
    /// The client went away first.
    Dropped,
}

impl Ended {
    pub fn outcome(&self) -> &'static str {
        match self {
            Ended::Ok => Outcome::Ok.as_str(),
            Ended::Failed { outcome, .. } => outcome.as_str(),
            Ended::Broken(_) => "rejected",
            Ended::Dropped => "dropped",
        }
    }
}

/// Why hyper must cut the client's response short (it then closes the connection without
/// the body's last chunk, so the client sees an incomplete response, never a whole one).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StreamError(String);

pub enum ReplyBody {
    Whole(Full<Bytes>),
    Streamed(Box<Streamed>),
    /// A body the host writes as it goes (server-sent events, a deploy's progress): each
    /// message is a piece, and the body ends when the sender is dropped. A client that
    /// goes away drops the receiver, and the writer's next send fails.
    Feed(tokio::sync::mpsc::Receiver<Bytes>),
}

impl From<Bytes> for ReplyBody {
    fn from(b: Bytes) -> Self {
        ReplyBody::Whole(Full::new(b))
    }
}

impl Default for ReplyBody {
    fn default() -> Self {
        Bytes::new().into()
    }
}

impl From<String> for ReplyBody {
    fn from(s: String) -> Self {
        Bytes::from(s).into()
    }
}

impl From<&'static str> for ReplyBody {
    fn from(s: &'static str) -> Self {
        Bytes::from_static(s.as_bytes()).into()
    }
}

impl ReplyBody {
    pub fn is_streamed(&self) -> bool {
        matches!(self, ReplyBody::Streamed(_))
    }

    /// Run `f` once when a streamed body ends, however it ends (hooks run in the order they
    /// were added). A whole body has already ended: `f` runs now.
    pub fn on_end(&mut self, f: impl FnOnce(&Ended) + Send + 'static) {
        match self {
            ReplyBody::Whole(_) | ReplyBody::Feed(_) => f(&Ended::Ok),
            ReplyBody::Streamed(s) => s.hooks.push(Box::new(f)),
        }
    }
}

type NextFrame = Pin<
    Box<
        dyn Future<
                Output = (
                    UnixStream,
                    Result<std::io::Result<Option<Result<Bytes, frame::FrameError>>>, ()>,
                ),
            > + Send,
    >,
>;

/// Run once when a streamed body ends.
type Hook = Box<dyn FnOnce(&Ended) + Send>;

pub struct Streamed {
    /// The connection, between reads; inside `reading` during one.
    conn: Option<UnixStream>,
    reading: Option<NextFrame>,
    /// Takes the connection back into its pool once the body has ended cleanly.
    give_back: Option<Box<dyn FnOnce(UnixStream) + Send>>,
    /// Body bytes still allowed (the function's `max_body`).
    left: usize,
    /// The host's backstop: the sandbox's own timeout ends the call before this.
    deadline: Instant,
    hooks: Vec<Hook>,
    ended: bool,
}

impl Streamed {
    pub(super) fn new(
        conn: UnixStream,
        give_back: Box<dyn FnOnce(UnixStream) + Send>,
        max_body: usize,
        deadline: Instant,
    ) -> Self {
        Streamed {
            conn: Some(conn),
            reading: None,
            give_back: Some(give_back),
            left: max_body,
            deadline,
            hooks: Vec::new(),
            ended: false,
        }
    }

    fn end(&mut self, how: Ended) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        for hook in self.hooks.drain(..) {
            hook(&how);
        }
    }

    fn fail(&mut self, how: Ended) -> Poll<Option<Result<Frame<Bytes>, StreamError>>> {
        let message = match &how {
            Ended::Failed { outcome, message } => {
                format!("the function failed ({}): {message}", outcome.as_str())
            }
            Ended::Broken(why) => format!("the sandbox broke off the response: {why}"),
            Ended::Ok | Ended::Dropped => String::new(),
        };
        self.end(how);
        Poll::Ready(Some(Err(StreamError(message))))
    }
}

impl Drop for Streamed {
    fn drop(&mut self) {
        // Not read to its end: the connection closes with it (the sandbox's next write
        // fails, and the guest sees its body stream closed).
        self.end(Ended::Dropped);
    }
}

impl Body for ReplyBody {
    type Data = Bytes;
    type Error = StreamError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, StreamError>>> {
        let s = match self.get_mut() {
            ReplyBody::Whole(b) => {
                return Pin::new(b).poll_frame(cx).map_err(|never| match never {})
            }
            ReplyBody::Feed(rx) => return rx.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b)))),
            ReplyBody::Streamed(s) => s.as_mut(),
        };
        if s.ended {
            return Poll::Ready(None);
        }
        if s.reading.is_none() {
            let Some(mut conn) = s.conn.take() else {
                return s.fail(Ended::Broken("no connection".into()));
            };
            let (limit, deadline) = (s.left + frame::MAX_HEAD_BYTES, s.deadline);
            s.reading = Some(Box::pin(async move {
                let r = tokio::time::timeout_at(deadline, frame::read(&mut conn, limit)).await;
                (conn, r.map_err(|_| ()))
            }));
        }
        let (conn, read) = match s.reading.as_mut().expect("set above").as_mut().poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(r) => r,
        };
        s.reading = None;
        let payload = match read {
            Ok(Ok(Some(Ok(p)))) => p,
            Ok(Ok(Some(Err(e)))) => return s.fail(Ended::Broken(e.to_string())),
            Ok(Ok(None)) => return s.fail(Ended::Broken("closed mid-response".into())),
            Ok(Err(e)) => return s.fail(Ended::Broken(e.to_string())),
            Err(()) => return s.fail(Ended::Broken("past the function's timeout".into())),
        };
        match frame::decode_body(payload) {
            Ok(frame::BodyFrame::Chunk(data)) => {
                if data.len() > s.left {
                    return s.fail(Ended::Broken("a body over max_body".into()));
                }
                s.left -= data.len();
                s.conn = Some(conn);
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            Ok(frame::BodyFrame::End(verdict)) => {
                // The connection is between requests again: back to the pool.
                if let Some(give_back) = s.give_back.take() {
                    give_back(conn);
                }
                let outcome = verdict
                    .get(protocol::OUTCOME)
                    .and_then(|v| v.to_str().ok())
                    .and_then(Outcome::parse)
                    .unwrap_or(Outcome::Ok);
                if outcome == Outcome::Ok {
                    s.end(Ended::Ok);
                    return Poll::Ready(None);
                }
                let message = verdict
                    .get(protocol::MESSAGE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("handler failed")
                    .to_string();
                s.fail(Ended::Failed { outcome, message })
            }
            Err(e) => s.fail(Ended::Broken(e.to_string())),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReplyBody::Whole(b) => b.is_end_stream(),
            ReplyBody::Streamed(s) => s.ended,
            ReplyBody::Feed(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReplyBody::Whole(b) => b.size_hint(),
            ReplyBody::Streamed(_) | ReplyBody::Feed(_) => SizeHint::default(),
        }
    }
}
