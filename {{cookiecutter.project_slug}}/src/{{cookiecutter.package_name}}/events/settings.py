"""The events' settings: where outgoing events go, and the secrets that sign and verify them."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Self
from urllib.parse import urlsplit

from environs import Env
from marshmallow import ValidationError
from marshmallow.validate import Range

from ..environment import SECRET_RULE, Group, Problems, optional, variable

if TYPE_CHECKING:
    from ..settings import Settings

EVENTS_SCHEMES = ("http", "https")


@dataclasses.dataclass(frozen=True)
class EventSettings(Group):
    # Unset: detached, nothing is sent. May carry credentials.
    url: str | None = variable("EVENTS_URL", "url")
    # Shared with the other app: signs outgoing events, verifies incoming ones.
    secret: str | None = variable("EVENTS_SECRET", "secret")
    # The old secret during a rotation: still accepted, never used to sign.
    secret_previous: str | None = variable("EVENTS_SECRET_PREVIOUS", "secret")
    # With backoff capped at 10 minutes: about an hour before an operator steps in.
    max_attempts: int = variable("EVENTS_MAX_ATTEMPTS")

    @classmethod
    def read(cls, env: Env) -> Self:
        env.add_parser("events_url", _parse_events_url)
        return cls(
            url=env.events_url("EVENTS_URL", None),
            secret=env.str("EVENTS_SECRET", "", validate=optional(SECRET_RULE)) or None,
            secret_previous=env.str("EVENTS_SECRET_PREVIOUS", "", validate=optional(SECRET_RULE)) or None,
            max_attempts=env.int("EVENTS_MAX_ATTEMPTS", 12, validate=Range(min=1, max=100)),
        )

    def problems(self, found: Mapping[str, list[str]], settings: Settings) -> Problems:
        if self.url and not self.secret and "EVENTS_SECRET" not in found:
            return {"EVENTS_SECRET": ["Environment variable not set (it signs the events to EVENTS_URL)."]}
        return {}

    @property
    def secrets(self) -> tuple[str, ...]:
        """The current secret, then the previous one during a rotation."""
        return tuple(secret for secret in (self.secret, self.secret_previous) if secret)


def _parse_events_url(value: str) -> str | None:
    if not value:
        return None  # `EVENTS_URL=` means detached, like unset
    parts = urlsplit(value)
    if parts.scheme not in EVENTS_SCHEMES or not parts.hostname:
        raise ValidationError(f"Not an absolute URL; the scheme must be one of: {', '.join(EVENTS_SCHEMES)}.")
    return value
