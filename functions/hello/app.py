"""hello: a wasi:http handler in Python (componentize-py). Answers every request with a
fixed greeting, and `/hello/stream` with a streamed body: `n` lines (default 3, at most
100), one every `ms` milliseconds (default 100, at most 2000), as the guest writes them.
With `fail=1` it raises after the first line and a pause, so the body breaks off
mid-stream. `?log=<text>` also writes the text on stderr (the invocation's log), and
`?raise=1` then raises before answering (a trap whose log tells why)."""

import sys
from urllib.parse import parse_qs, urlsplit

from wit_world import exports
from wit_world.imports import monotonic_clock
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)
from componentize_py_types import Ok

BODY = b"hello from surge\n"


def number(query, name, default, most):
    try:
        return max(0, min(int(query.get(name, [default])[0]), most))
    except ValueError:
        return default


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        path = request.path_with_query()
        if path and "/stream" in path:
            return stream(parse_qs(urlsplit(path).query), response_out)
        if path and "?" in path:
            query = parse_qs(urlsplit(path).query)
            for line in query.get("log", []):
                print(line, file=sys.stderr, flush=True)
            if query.get("raise", ["0"])[0] == "1":
                raise RuntimeError("asked to raise")
        headers = Fields.from_list([("content-type", b"text/plain")])
        response = OutgoingResponse(headers)
        response.set_status_code(200)
        body = response.body()
        ResponseOutparam.set(response_out, Ok(response))
        stream_ = body.write()
        stream_.blocking_write_and_flush(BODY)
        stream_.__exit__(None, None, None)
        OutgoingBody.finish(body, None)


def stream(query, response_out: ResponseOutparam) -> None:
    n = number(query, "n", 3, 100)
    ms = number(query, "ms", 100, 2000)
    fail = query.get("fail", ["0"])[0] == "1"
    response = OutgoingResponse(Fields.from_list([("content-type", b"text/plain")]))
    response.set_status_code(200)
    body = response.body()
    ResponseOutparam.set(response_out, Ok(response))
    out = body.write()
    for i in range(n):
        if i > 0:
            monotonic_clock.subscribe_duration(ms * 1_000_000).block()
            if fail:
                raise RuntimeError("asked to fail mid-stream")
        out.blocking_write_and_flush(b"line %d\n" % i)
    out.__exit__(None, None, None)
    OutgoingBody.finish(body, None)
