"""The bake's own test issuer (tests/issuer.py) as a process: what the bearer-token row verifies against."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator

from .context import Run

# Longer than any benchmark run: the token must not expire between rounds.
TOKEN_LIFETIME_SECONDS = 6 * 3600
START_TIMEOUT = 60.0


@contextlib.contextmanager
def running_issuer(run: Run) -> Iterator[str]:
    """Yields the issuer's URL once it listens; the process is killed at the end."""
    script = run.args.service / "tests" / "issuer.py"
    process = subprocess.Popen(
        [run.python, script], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert process.stdout is not None
        # Its first line is the port, written once the socket listens.
        port = int(process.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        process.kill()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def token(issuer_url: str) -> str:
    """A token with every scope, for the audience the service is configured with (its slug)."""
    claims = {"exp": int(time.time()) + TOKEN_LIFETIME_SECONDS}
    request = urllib.request.Request(
        f"{issuer_url}/token",
        data=json.dumps({"claims": claims}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=START_TIMEOUT) as response:
        return str(json.load(response)["token"])
