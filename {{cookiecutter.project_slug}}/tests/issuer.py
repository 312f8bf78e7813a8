"""A real OpenID Connect issuer for the tests: metadata and a JWKS over HTTP, tokens signed on demand.

Run as a process (`python tests/issuer.py`), it prints its port and serves 127.0.0.1 until killed:
  GET  /.well-known/openid-configuration, /jwks    what the service fetches (counted: GET /stats)
  POST /token {"claims": {...}, "signer": "..."}   a token; a claim set to null is left out
  POST /rotate                                     a new signing key replaces the published one
`IssuerProcess` starts one and speaks to it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

SCOPES = "items:read items:write"
LIFETIME = 300


class SigningKey:
    def __init__(self, kid: str) -> None:
        self.kid = kid
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def public_jwk(self) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key()))
        return {**jwk, "kid": self.kid, "alg": "RS256", "use": "sig"}

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


class Issuer:
    def __init__(self, url: str) -> None:
        self.url = url
        self.generation = 1
        self.current = SigningKey("key-1")
        # Never published: what a forger holds.
        self.rogue = SigningKey("rogue")
        self.fetches: Counter[str] = Counter()

    def rotate(self) -> None:
        self.generation += 1
        self.current = SigningKey(f"key-{self.generation}")

    def token(self, overrides: dict[str, Any], signer: str) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.url,
            "sub": "user-1",
            "aud": "{{ cookiecutter.project_slug }}",
            "scope": SCOPES,
            "iat": now,
            "exp": now + LIFETIME,
        }
        claims.update(overrides)
        claims = {name: value for name, value in claims.items() if value is not None}
        if signer == "none":
            return jwt.encode(claims, "", algorithm="none")
        if signer == "hmac-with-public-key":
            return hmac_token(claims, self.current.kid, self.current.public_pem())
        key = self.rogue if signer == "rogue" else self.current
        return jwt.encode(claims, key.private, algorithm="RS256", headers={"kid": key.kid})


def hmac_token(claims: dict[str, Any], kid: str, secret: bytes) -> str:
    """HS256 keyed with the public key: accepted only by a verifier that lets the token pick the algorithm."""

    def part(document: dict[str, Any]) -> bytes:
        return base64.urlsafe_b64encode(json.dumps(document).encode()).rstrip(b"=")

    signed = part({"alg": "HS256", "typ": "JWT", "kid": kid}) + b"." + part(claims)
    signature = hmac.new(secret, signed, hashlib.sha256).digest()
    return (signed + b"." + base64.urlsafe_b64encode(signature).rstrip(b"=")).decode()


def serve() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.issuer = Issuer(f"http://127.0.0.1:{server.server_port}")  # type: ignore[attr-defined]
    print(server.server_port, flush=True)
    server.serve_forever()


class Handler(BaseHTTPRequestHandler):
    @property
    def issuer(self) -> Issuer:
        return self.server.issuer  # type: ignore[attr-defined,no-any-return]

    def do_GET(self) -> None:
        if self.path == "/.well-known/openid-configuration":
            self.issuer.fetches["metadata"] += 1
            self.answer({"issuer": self.issuer.url, "jwks_uri": f"{self.issuer.url}/jwks"})
        elif self.path == "/jwks":
            self.issuer.fetches["jwks"] += 1
            # An encryption key and a shared secret beside the signing key: the service must skip both.
            self.answer(
                {
                    "keys": [
                        self.issuer.current.public_jwk(),
                        {**self.issuer.rogue.public_jwk(), "kid": "encryption", "use": "enc"},
                        {"kty": "oct", "kid": "shared", "k": "c2VjcmV0"},
                    ]
                }
            )
        elif self.path == "/stats":
            self.answer(dict(self.issuer.fetches))
        else:
            self.answer({"error": "not found"}, 404)

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", "0"))
        request = json.loads(self.rfile.read(length) or b"{}")
        if self.path == "/token":
            token = self.issuer.token(request.get("claims", {}), request.get("signer", "current"))
            self.answer({"token": token})
        elif self.path == "/rotate":
            self.issuer.rotate()
            self.answer({"kid": self.issuer.current.kid})
        else:
            self.answer({"error": "not found"}, 404)

    def answer(self, document: Any, status: int = 200) -> None:
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the tests read the service's logs, not this one's


class IssuerProcess:
    """Drives a running issuer process."""

    def __init__(self, process: subprocess.Popen[str], port: int) -> None:
        self.process = process
        self.url = f"http://127.0.0.1:{port}"

    def token(self, signer: str = "current", **claims: Any) -> str:
        response = httpx2.post(f"{self.url}/token", json={"claims": claims, "signer": signer})
        response.raise_for_status()
        return str(response.json()["token"])

    def rotate(self) -> None:
        httpx2.post(f"{self.url}/rotate").raise_for_status()

    def fetches(self) -> Counter[str]:
        return Counter(httpx2.get(f"{self.url}/stats").json())

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)


@contextmanager
def running_issuer() -> Iterator[IssuerProcess]:
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__))], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert process.stdout is not None
        # The first line is the port, written once the socket listens.
        port = int(process.stdout.readline())
        yield IssuerProcess(process, port)
    finally:
        process.kill()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


if __name__ == "__main__":
    serve()
