"""The events' settings: where outgoing events go, and the `whsec_` secrets that sign and verify them."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Self
from urllib.parse import urlsplit

from environs import Env
from marshmallow import ValidationError
from marshmallow.validate import Range

from ..environment import Group, Problems, variable
from .signing import HOW_TO_MAKE_ONE, key_of

if TYPE_CHECKING:
    from ..settings import Settings

EVENTS_SCHEMES = ("http", "https")


@dataclasses.dataclass(frozen=True)
class EventSettings(Group):
    # Unset: detached, nothing is sent. May carry credentials.
    url: str | None = variable("EVENTS_URL", "url")
    # Shared with the other app: signs outgoing events, verifies incoming ones.
    secret: str | None = variable("EVENTS_SECRET", "secret")
    # The old secret during a rotation: signs too (a second signature), and is accepted.
    secret_previous: str | None = variable("EVENTS_SECRET_PREVIOUS", "secret")
    # With backoff capped at 10 minutes: about an hour before an operator steps in.
    max_attempts: int = variable("EVENTS_MAX_ATTEMPTS")

    @classmethod
    def read(cls, env: Env) -> Self:
        env.add_parser("events_url", _parse_events_url)
        env.add_parser("events_secret", _parse_events_secret)
        return cls(
            url=env.events_url("EVENTS_URL", None),
            secret=env.events_secret("EVENTS_SECRET", None),
            secret_previous=env.events_secret("EVENTS_SECRET_PREVIOUS", None),
            max_attempts=env.int("EVENTS_MAX_ATTEMPTS", 12, validate=Range(min=1, max=100)),
        )

    def problems(self, found: Mapping[str, list[str]], settings: Settings) -> Problems:
        if self.url and not self.secret and "EVENTS_SECRET" not in found:
            unset = f"Environment variable not set (it signs the events to EVENTS_URL); {HOW_TO_MAKE_ONE}."
            return {"EVENTS_SECRET": [unset]}
        return {}

    @property
    def secrets(self) -> tuple[str, ...]:
        """The current secret, then the previous one during a rotation: each signs, either verifies."""
        return tuple(secret for secret in (self.secret, self.secret_previous) if secret)


def _parse_events_url(value: str) -> str | None:
    if not value:
        return None  # `EVENTS_URL=` means detached, like unset
    parts = urlsplit(value)
    if parts.scheme not in EVENTS_SCHEMES or not parts.hostname:
        raise ValidationError(f"Not an absolute URL; the scheme must be one of: {', '.join(EVENTS_SCHEMES)}.")
    return value


def _parse_events_secret(value: str) -> str | None:
    if not value:
        return None  # `EVENTS_SECRET=` means unset
    try:
        key_of(value)
    except ValueError as problem:
        raise ValidationError(f"{problem}; {HOW_TO_MAKE_ONE}.") from None
    return value
