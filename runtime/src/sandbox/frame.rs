//! The gateway↔sandbox hop: one length-prefixed frame per request and one per response on
//! the sandbox's Unix socket, read and written by the calling task itself. It replaced
//! HTTP/1.1 through hyper, whose client runs a connection task per socket: each request then
//! crossed two channels and woke two tasks on the gateway's thread, and both ends parsed
//! and wrote HTTP text (BENCHMARKS.md, "The hop").
//!
//! A frame is `u32` (little endian) payload length, then the payload:
//! - request: `b'Q'`, method (`u16` length + bytes), path and query (`u32` + bytes),
//!   headers, then the body: the rest of the payload;
//! - response: `b'R'`, status (`u16`), headers, then the body;
//! - or a streamed response: `b'H'`, status, headers (the head alone), then any number of
//!   `b'C'` frames (a piece of the body each: the rest of the payload), then one `b'E'`
//!   frame with headers of its own: the sandbox's verdict on the call (`x-surge-outcome`,
//!   `x-surge-message`), known only once the body is done. No `E` header means `ok`.
//!
//! A sandbox sends the whole response in one `R` frame when the guest finishes its body
//! before it waits on anything and within [`STREAM_AFTER`] bytes: the common case costs one
//! frame each way. Otherwise it streams (`sandbox/server.rs`, `exec/http.rs`).
//!
//! Headers are a `u16` count, then each name (`u16` + bytes) and value (`u32` + bytes).
//! The body needs no length of its own: the frame has one. Both sides bound what they read
//! before they allocate it, and every malformed frame is an error, never a panic: the host
//! reads frames from a process that runs hostile code.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Most bytes a frame may spend beside its body: method, path and headers.
pub const MAX_HEAD_BYTES: usize = 64 << 10;

/// Body bytes a sandbox holds before it sends what it has as a streamed response; also the
/// most it holds between two pieces of a streamed body.
pub const STREAM_AFTER: usize = 64 << 10;

const REQUEST: u8 = b'Q';
const RESPONSE: u8 = b'R';
const HEAD: u8 = b'H';
const CHUNK: u8 = b'C';
const END: u8 = b'E';

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("a frame of {0} bytes is over the limit of {1}")]
    TooLarge(usize, usize),
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
}

/// Read one frame's payload. `Ok(None)`: the peer closed the connection between frames.
/// A payload over `max` is refused before it is read.
pub async fn read<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
) -> std::io::Result<Option<Result<Bytes, FrameError>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let n = u32::from_le_bytes(len) as usize;
    if n > max {
        return Ok(Some(Err(FrameError::TooLarge(n, max))));
    }
    let mut buf = BytesMut::zeroed(n);
    r.read_exact(&mut buf).await?;
    Ok(Some(Ok(buf.freeze())))
}

fn put_headers(out: &mut BytesMut, headers: &HeaderMap) {
    let n = headers.len().min(u16::MAX as usize);
    out.put_u16_le(n as u16);
    for (name, value) in headers.iter().take(n) {
        out.put_u16_le(name.as_str().len() as u16);
        out.put_slice(name.as_str().as_bytes());
        out.put_u32_le(value.len() as u32);
        out.put_slice(value.as_bytes());
    }
}

/// Start a frame: room for the length, written by [`finish`].
fn start(capacity: usize) -> BytesMut {
    let mut out = BytesMut::with_capacity(capacity + 4);
    out.put_u32_le(0);
    out
}

fn finish(mut out: BytesMut) -> Bytes {
    let n = (out.len() - 4) as u32;
    out[..4].copy_from_slice(&n.to_le_bytes());
    out.freeze()
}

/// The whole frame (length included) for a request. A method name over 64 KiB or a path
/// over 4 GiB cannot reach here: hyper refuses them at the gateway.
pub fn encode_request(req: &Request<Bytes>) -> Bytes {
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .as_bytes();
    let method = req.method().as_str().as_bytes();
    let mut out = start(64 + method.len() + path.len() + req.body().len());
    out.put_u8(REQUEST);
    out.put_u16_le(method.len() as u16);
    out.put_slice(method);
    out.put_u32_le(path.len() as u32);
    out.put_slice(path);
    put_headers(&mut out, req.headers());
    out.put_slice(req.body());
    finish(out)
}

/// The whole frame (length included) for a response.
pub fn encode_response(resp: &Response<Bytes>) -> Bytes {
    let mut out = start(64 + resp.body().len());
    out.put_u8(RESPONSE);
    out.put_u16_le(resp.status().as_u16());
    put_headers(&mut out, resp.headers());
    out.put_slice(resp.body());
    finish(out)
}

/// The head of a streamed response (its body follows in [`encode_chunk`] frames).
pub fn encode_head(status: StatusCode, headers: &HeaderMap) -> Bytes {
    let mut out = start(64);
    out.put_u8(HEAD);
    out.put_u16_le(status.as_u16());
    put_headers(&mut out, headers);
    finish(out)
}

/// One piece of a streamed body.
pub fn encode_chunk(data: &[u8]) -> Bytes {
    let mut out = start(1 + data.len());
    out.put_u8(CHUNK);
    out.put_slice(data);
    finish(out)
}

/// The end of a streamed body, with the sandbox's verdict on the call.
pub fn encode_end(verdict: &HeaderMap) -> Bytes {
    let mut out = start(64);
    out.put_u8(END);
    put_headers(&mut out, verdict);
    finish(out)
}

/// A cursor over a payload that fails instead of panicking when it runs out.
struct Cursor(Bytes);

impl Cursor {
    fn need(&self, n: usize) -> Result<(), FrameError> {
        if self.0.remaining() < n {
            Err(FrameError::Malformed("truncated"))
        } else {
            Ok(())
        }
    }
    fn u8(&mut self) -> Result<u8, FrameError> {
        self.need(1)?;
        Ok(self.0.get_u8())
    }
    fn u16(&mut self) -> Result<u16, FrameError> {
        self.need(2)?;
        Ok(self.0.get_u16_le())
    }
    fn u32(&mut self) -> Result<u32, FrameError> {
        self.need(4)?;
        Ok(self.0.get_u32_le())
    }
    fn bytes(&mut self, n: usize) -> Result<Bytes, FrameError> {
        self.need(n)?;
        Ok(self.0.split_to(n))
    }
    fn headers(&mut self) -> Result<HeaderMap, FrameError> {
        let n = self.u16()? as usize;
        let mut h = HeaderMap::with_capacity(n);
        for _ in 0..n {
            let len = self.u16()? as usize;
            let name = self.bytes(len)?;
            let len = self.u32()? as usize;
            let value = self.bytes(len)?;
            let name =
                HeaderName::from_bytes(&name).map_err(|_| FrameError::Malformed("header name"))?;
            let value = HeaderValue::from_maybe_shared(value)
                .map_err(|_| FrameError::Malformed("header value"))?;
            h.append(name, value);
        }
        Ok(h)
    }
}

/// A request payload (as [`read`] returns it) back into a request; the body shares the
/// payload's buffer.
pub fn decode_request(payload: Bytes) -> Result<Request<Bytes>, FrameError> {
    let mut c = Cursor(payload);
    if c.u8()? != REQUEST {
        return Err(FrameError::Malformed("not a request"));
    }
    let len = c.u16()? as usize;
    let method = Method::from_bytes(&c.bytes(len)?).map_err(|_| FrameError::Malformed("method"))?;
    let len = c.u32()? as usize;
    let path = c.bytes(len)?;
    let uri = http::Uri::from_maybe_shared(path).map_err(|_| FrameError::Malformed("path"))?;
    let headers = c.headers()?;
    let mut req = Request::new(c.0);
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;
    Ok(req)
}

/// The first frame of a response.
#[derive(Debug)]
pub enum ResponseStart {
    /// The whole response; the body shares the payload's buffer.
    Whole(Response<Bytes>),
    /// The head of a streamed response: [`BodyFrame`]s follow.
    Head(Response<()>),
}

/// A frame after a streamed response's head.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyFrame {
    Chunk(Bytes),
    /// The body is done; the sandbox's verdict on the call.
    End(HeaderMap),
}

/// A response's first payload back into a response.
pub fn decode_response(payload: Bytes) -> Result<ResponseStart, FrameError> {
    let mut c = Cursor(payload);
    let kind = c.u8()?;
    if kind != RESPONSE && kind != HEAD {
        return Err(FrameError::Malformed("not a response"));
    }
    let status = StatusCode::from_u16(c.u16()?).map_err(|_| FrameError::Malformed("status"))?;
    let headers = c.headers()?;
    if kind == HEAD {
        if !c.0.is_empty() {
            return Err(FrameError::Malformed("a body in a response head"));
        }
        let mut resp = Response::new(());
        *resp.status_mut() = status;
        *resp.headers_mut() = headers;
        return Ok(ResponseStart::Head(resp));
    }
    let mut resp = Response::new(c.0);
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    Ok(ResponseStart::Whole(resp))
}

/// A payload after a streamed response's head.
pub fn decode_body(payload: Bytes) -> Result<BodyFrame, FrameError> {
    let mut c = Cursor(payload);
    match c.u8()? {
        CHUNK => Ok(BodyFrame::Chunk(c.0)),
        END => {
            let verdict = c.headers()?;
            if !c.0.is_empty() {
                return Err(FrameError::Malformed("bytes after a body's end"));
            }
            Ok(BodyFrame::End(verdict))
        }
        _ => Err(FrameError::Malformed("not a piece of a body")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(frame: Bytes) -> Bytes {
        let n = u32::from_le_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(n, frame.len() - 4, "the length prefix counts the payload");
        frame.slice(4..)
    }

    #[test]
    fn requests_and_responses_round_trip() {
        let req = Request::builder()
            .method("POST")
            .uri("/hello/x?a=1&b=%20")
            .header("host", "localhost")
            .header("x-many", "1")
            .header("x-many", "2")
            .body(Bytes::from_static(b"the body\0with a nul"))
            .unwrap();
        let back = decode_request(payload(encode_request(&req))).unwrap();
        assert_eq!(back.method(), req.method());
        assert_eq!(back.uri(), req.uri());
        assert_eq!(back.headers(), req.headers());
        assert_eq!(back.body(), req.body());

        let resp = Response::builder()
            .status(418)
            .header("content-type", "text/plain")
            .body(Bytes::new())
            .unwrap();
        let ResponseStart::Whole(back) = decode_response(payload(encode_response(&resp))).unwrap()
        else {
            panic!("a whole response")
        };
        assert_eq!(back.status(), 418);
        assert_eq!(back.headers(), resp.headers());
        assert!(back.body().is_empty());
    }

    /// Every prefix of a valid frame, and a few lies in its lengths, are errors, not panics.
    #[test]
    fn malformed_payloads_are_errors() {
        let resp = Response::builder()
            .status(200)
            .header("a", "b")
            .body(Bytes::from_static(b"xyz"))
            .unwrap();
        let p = payload(encode_response(&resp));
        // A cut inside the head is an error; a cut inside the body is a shorter body.
        for cut in 0..p.len() - 3 {
            assert!(decode_response(p.slice(..cut)).is_err(), "prefix of {cut}");
            assert!(decode_request(p.slice(..cut)).is_err(), "prefix of {cut}");
        }
        let mut bad = p.to_vec();
        bad[5] = 0xff; // the header name's length
        assert!(decode_response(Bytes::from(bad)).is_err());
        let mut bad = p.to_vec();
        bad[1] = 0;
        bad[2] = 0; // status 0
        assert_eq!(
            decode_response(Bytes::from(bad)).unwrap_err(),
            FrameError::Malformed("status")
        );
        assert!(decode_request(p).is_err(), "a response is not a request");
    }

    #[test]
    fn streamed_responses_round_trip_and_refuse_frames_out_of_place() {
        let mut h = HeaderMap::new();
        h.insert(
            "content-type",
            HeaderValue::from_static("text/event-stream"),
        );
        let head = payload(encode_head(StatusCode::ACCEPTED, &h));
        let ResponseStart::Head(back) = decode_response(head.clone()).unwrap() else {
            panic!("a head")
        };
        assert_eq!(back.status(), 202);
        assert_eq!(back.headers(), &h);
        assert_eq!(
            decode_body(payload(encode_chunk(b"data: 1\n\n"))).unwrap(),
            BodyFrame::Chunk(Bytes::from_static(b"data: 1\n\n"))
        );
        let mut verdict = HeaderMap::new();
        verdict.insert("x-surge-outcome", HeaderValue::from_static("trap"));
        assert_eq!(
            decode_body(payload(encode_end(&verdict))).unwrap(),
            BodyFrame::End(verdict)
        );
        // A head is not a piece of a body, a piece is not a response, and neither hides
        // bytes after its headers.
        assert!(decode_body(head.clone()).is_err());
        assert!(decode_response(payload(encode_chunk(b"x"))).is_err());
        let mut long = head.to_vec();
        long.push(b'!');
        assert!(decode_response(Bytes::from(long)).is_err());
        let mut long = payload(encode_end(&HeaderMap::new())).to_vec();
        long.push(b'!');
        assert!(decode_body(Bytes::from(long)).is_err());
        assert!(decode_body(Bytes::new()).is_err());
    }

    #[tokio::test]
    async fn reading_bounds_the_frame_before_allocating() {
        let frame = encode_response(
            &Response::builder()
                .body(Bytes::from(vec![7u8; 1000]))
                .unwrap(),
        );
        let mut r = &frame[..];
        let got = read(&mut r, 2000).await.unwrap().unwrap().unwrap();
        let ResponseStart::Whole(got) = decode_response(got).unwrap() else {
            panic!("a whole response")
        };
        assert_eq!(got.body().len(), 1000);
        assert!(read(&mut r, 2000).await.unwrap().is_none(), "clean end");
        let mut r = &frame[..];
        assert!(matches!(
            read(&mut r, 100).await.unwrap().unwrap(),
            Err(FrameError::TooLarge(_, 100))
        ));
        let mut short = &frame[..10];
        assert!(read(&mut short, 2000).await.is_err(), "cut mid-frame");
    }
}
