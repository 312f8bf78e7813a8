"""Another app that knows only the Standard Webhooks spec: its reference library, nothing of this service.

`python spec_receiver.py NAME=SECRET...` serves POST on a free port of 127.0.0.1 and prints, one JSON line
each: first {"port": ...}, then per request {"id", "verified_by", "payload"}, where `verified_by` names every
secret with which `Webhook(secret).verify(body, headers)` accepted it. It answers 200 if one did, else 401.
Run as its own process by tests/test_standard_webhooks.py.
"""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError


def verified_by(webhooks: dict[str, Webhook], body: bytes, headers: dict[str, str]) -> tuple[list[str], Any]:
    names, payload = [], None
    for name, webhook in webhooks.items():
        try:
            payload = webhook.verify(body, headers)
        except WebhookVerificationError:
            continue
        names.append(name)
    return names, payload


def serve(webhooks: dict[str, Webhook]) -> None:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            names, payload = verified_by(webhooks, body, dict(self.headers.items()))
            print(
                json.dumps({"id": self.headers.get("webhook-id"), "verified_by": names, "payload": payload})
            )
            self.send_response(200 if names else 401)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # stdout is the report

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(json.dumps({"port": server.server_address[1]}))
    server.serve_forever()


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    serve({name: Webhook(secret) for name, secret in (arg.split("=", 1) for arg in sys.argv[1:])})
