"""A local OTLP/HTTP receiver for the telemetry-on rows: it accepts span exports and counts them.

It decodes nothing: an empty body with 200 is a full success in OTLP/HTTP (protobuf), and the count of
exports and bytes shows the spans really left the service.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TRACES_PATH = "/v1/traces"


class Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), ExportHandler)
        self.lock = threading.Lock()
        self.exports = 0
        self.bytes = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def record(self, size: int) -> None:
        with self.lock:
            self.exports += 1
            self.bytes += size


class ExportHandler(BaseHTTPRequestHandler):
    # Keep-alive, as the exporter's session expects.
    protocol_version = "HTTP/1.1"
    server: Receiver

    def do_POST(self) -> None:
        size = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(size)
        if self.path == TRACES_PATH:
            self.server.record(size)
            self.send_response(200)
        else:
            self.send_response(404)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def receiving() -> Iterator[Receiver]:
    receiver = Receiver()
    thread = threading.Thread(target=receiver.serve_forever, name="otlp-receiver", daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.shutdown()
        receiver.server_close()
