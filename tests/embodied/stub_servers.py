"""Loopback HTTP servers for the remote-planner tests: each request is recorded (arrival time,
path, Authorization header, JSON body) and answered by a behaviour function."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_REQUESTS = 50  # a runaway retry loop fails a test instead of hanging it


def chat_reply(content: str, model: str = "m") -> bytes:
    return json.dumps(
        {
            "object": "chat.completion",
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3},
        }
    ).encode()


class StubServer:
    """``behave(handler, request) -> None`` writes the answer; ``request`` is the recorded
    dict (t, path, auth, body); ``handler.stub`` is this server, whose ``stop`` Event is set
    on close (for handlers that hang)."""

    def __init__(self, behave: Callable[[BaseHTTPRequestHandler, dict], None]):
        self.requests: list[dict] = []
        self.stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            stub = server

            def log_message(self, *a):
                pass

            def do_POST(self):
                if len(server.requests) >= MAX_REQUESTS:
                    self.send_error(500, "request budget exhausted")
                    return
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n)
                req = dict(t=time.monotonic(), path=self.path, auth=self.headers.get("Authorization"))
                req["body"] = json.loads(raw) if raw else None
                server.requests.append(req)
                try:
                    behave(self, req)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up: expected
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)

    def __enter__(self) -> StubServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def send(handler: BaseHTTPRequestHandler, body: bytes, status: int = 200, headers: dict | None = None) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    for k, v in (headers or {}).items():
        handler.send_header(k, v)
    handler.end_headers()
    handler.wfile.write(body)


def answer(content: str) -> Callable:
    return lambda h, req: send(h, chat_reply(content))


def hang(h: BaseHTTPRequestHandler, req: dict) -> None:
    """Never answer (until the server closes)."""
    h.stub.stop.wait(60)
