"""Real receivers on loopback for what the telemetry SDKs send: an OTLP/HTTP endpoint and a Sentry one.

No collector or Sentry server runs here, so the tests run these in their own process and decode what
arrived over the wire, with the same protobuf messages (opentelemetry-proto) a collector uses.
"""

from __future__ import annotations

import gzip
import json
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2  # drop: tracing
from opentelemetry.proto.trace.v1.trace_pb2 import Span  # drop: tracing


@dataclass(frozen=True)  # drop: tracing
class ReceivedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    kind: str
    scope: str
    service: str
    version: str
    attributes: dict[str, Any]


class Receiver:
    """A loopback HTTP server that keeps every request body it gets, by path."""

    def __init__(self) -> None:
        self.bodies: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                with receiver.lock:
                    receiver.bodies.append((self.path, body))
                reply = receiver.reply(self.path)
                self.send_response(200)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the test's output is for the test

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def reply(self, path: str) -> bytes:
        return b""

    def received(self) -> list[tuple[str, bytes]]:
        with self.lock:
            return list(self.bodies)


class OtlpReceiver(Receiver):  # drop: tracing
    """What an OpenTelemetry Collector's OTLP/HTTP receiver does with traces, minus the forwarding."""

    def reply(self, path: str) -> bytes:
        bytes_: bytes = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        return bytes_

    def spans(self) -> list[ReceivedSpan]:
        spans = []
        for path, body in self.received():
            assert path == "/v1/traces", path
            request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
            for resource_spans in request.resource_spans:
                resource = {kv.key: kv.value.string_value for kv in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        spans.append(
                            ReceivedSpan(
                                name=span.name,
                                trace_id=span.trace_id.hex(),
                                span_id=span.span_id.hex(),
                                parent_id=span.parent_span_id.hex(),
                                kind=Span.SpanKind.Name(span.kind),
                                scope=scope_spans.scope.name,
                                service=resource.get("service.name", ""),
                                version=resource.get("service.version", ""),
                                attributes={kv.key: attribute_value(kv.value) for kv in span.attributes},
                            )
                        )
        return spans


def attribute_value(value: Any) -> Any:  # drop: tracing
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


class SentryReceiver(Receiver):
    """Sentry's envelope endpoint: each POST is a header line, then (item header, payload) pairs."""

    def dsn(self) -> str:
        return f"http://publickey@{self.url.removeprefix('http://')}/1"

    def events(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        for path, body in self.received():
            assert path == "/api/1/envelope/", path
            events.extend(payload for kind, payload in envelope_items(body) if kind == "event")
        return events

    def raw(self) -> bytes:
        return b"".join(body for _, body in self.received())


def envelope_items(body: bytes) -> Iterator[tuple[str, dict[str, Any]]]:
    """(type, payload) of each item of one envelope; payloads that are not JSON are skipped."""
    _, _, rest = body.partition(b"\n")  # the envelope header
    while rest.strip():
        header_line, _, rest = rest.partition(b"\n")
        header = json.loads(header_line)
        if "length" in header:
            payload, rest = rest[: header["length"]], rest[header["length"] + 1 :]
        else:
            payload, _, rest = rest.partition(b"\n")
        try:
            yield header["type"], json.loads(payload)
        except ValueError:
            continue


R = TypeVar("R", bound=Receiver)


@contextmanager
def serving(receiver: R) -> Iterator[R]:
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
        thread.join(timeout=10)
