//! The gateway↔sandbox transport: HTTP/1.1 over the sandbox's Unix socket, with a pool of
//! kept-alive connections. A connection goes back to the pool only after its response body
//! has been read, so a pooled connection is always ready for the next request.

use std::path::PathBuf;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::net::UnixStream;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The request never reached the sandbox (nobody listening, or the connection was
    /// already closed). It comes back, so it can go to the sandbox's replacement.
    #[error("the sandbox is not reachable: {reason}")]
    NotDelivered {
        reason: String,
        request: Box<Request<Full<Bytes>>>,
    },
    #[error("the sandbox closed the connection: {0}")]
    Broken(String),
    #[error("the response is over {0} bytes")]
    TooLarge(usize),
}

pub struct Endpoint {
    pub socket: PathBuf,
    pub pid: u32,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
}

impl Endpoint {
    pub fn new(socket: PathBuf, pid: u32) -> Self {
        Endpoint {
            socket,
            pid,
            idle: Mutex::new(Vec::new()),
        }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|e| e.to_string())?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// Send one request and read the whole response, up to `max_response` bytes.
    pub async fn send(
        &self,
        req: Request<Full<Bytes>>,
        max_response: usize,
    ) -> Result<Response<Bytes>, TransportError> {
        self.send_on(req, max_response, true).await
    }

    /// As [`Endpoint::send`], on a new connection: after a pooled connection turned out to be
    /// closed, this tells a sandbox that closed one connection from one that is gone.
    pub async fn send_fresh(
        &self,
        req: Request<Full<Bytes>>,
        max_response: usize,
    ) -> Result<Response<Bytes>, TransportError> {
        self.send_on(req, max_response, false).await
    }

    async fn send_on(
        &self,
        req: Request<Full<Bytes>>,
        max_response: usize,
        pooled: bool,
    ) -> Result<Response<Bytes>, TransportError> {
        let pooled = pooled
            .then(|| {
                let mut idle = self.idle.lock();
                let mut found = None;
                while let Some(s) = idle.pop() {
                    if s.is_ready() {
                        found = Some(s);
                        break;
                    }
                }
                found
            })
            .flatten();
        let mut sender = match pooled {
            Some(s) => s,
            None => match self.connect().await {
                Ok(s) => s,
                Err(reason) => {
                    return Err(TransportError::NotDelivered {
                        reason,
                        request: Box::new(req),
                    })
                }
            },
        };
        let resp = match sender.try_send_request(req).await {
            Ok(r) => r,
            Err(mut e) => {
                return Err(match e.take_message() {
                    Some(request) => TransportError::NotDelivered {
                        reason: e.into_error().to_string(),
                        request: Box::new(request),
                    },
                    None => TransportError::Broken(e.into_error().to_string()),
                })
            }
        };
        let (parts, body) = resp.into_parts();
        let bytes = match Limited::new(body, max_response).collect().await {
            Ok(c) => c.to_bytes(),
            Err(e)
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                return Err(TransportError::TooLarge(max_response));
            }
            Err(e) => return Err(TransportError::Broken(e.to_string())),
        };
        self.idle.lock().push(sender);
        Ok(Response::from_parts(parts, bytes))
    }
}
