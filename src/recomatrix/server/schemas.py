"""Request bodies of the HTTP API, validated at the edge with messages that name the field.

Bodies are strict: a JSON value of the wrong type (`"sponsored": 0`, `"watch_seconds": "5"`)
is a 422, not silently coerced, so what the OpenAPI schema promises is what is accepted.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict, StringConstraints

from recomatrix.types import EventType

Id = Annotated[str, StringConstraints(min_length=1, max_length=128, strip_whitespace=True)]
Label = Annotated[str, StringConstraints(min_length=1, max_length=64, strip_whitespace=True)]


def _epoch_seconds(value: float | datetime) -> float:
    seconds = value.timestamp() if isinstance(value, datetime) else float(value)
    if not 0 <= seconds <= 4_102_444_800:
        raise ValueError("must be epoch seconds between 1970 and 2100, or an ISO-8601 time")
    return seconds


def _encodable(text: str) -> str:
    # JSON may carry lone surrogates ("\ud800"); they cannot be stored, encoded or answered.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text: lone surrogates are not allowed") from None
    return text


# Free text of any length (the handler enforces the configured limit with its own message).
Text = Annotated[str, AfterValidator(_encodable)]

# Epoch seconds or an ISO-8601 time; validated to epoch seconds in 1970..2100. The datetime
# side stays lax: JSON has no time type, so it must be parsed from the string.
Timestamp = Annotated[float | Annotated[datetime, Strict(False)], AfterValidator(_epoch_seconds)]
# Strict and closed: wrong JSON types and unknown fields are named, never guessed at.
BODY = ConfigDict(extra="forbid", strict=True)


class EventIn(BaseModel):
    model_config = BODY

    event_id: Id | None = Field(
        None,
        description="Idempotency key: the same id is applied once (a retry repeats the "
        "event's ts, if it gave one). Generated if absent.",
    )
    user_id: Id
    item_id: Id
    type: EventType
    ts: Timestamp | None = Field(None, description="Event time; defaults to the server's now.")
    watch_seconds: float = Field(0.0, ge=0, le=86_400)
    context: dict[Label, Annotated[str, StringConstraints(max_length=256)]] | None = Field(
        None, max_length=32
    )


class EventBatch(BaseModel):
    model_config = BODY

    events: list[EventIn] = Field(min_length=1)


class ItemIn(BaseModel):
    model_config = BODY

    item_id: Id
    title: Annotated[str, StringConstraints(min_length=1, max_length=500, strip_whitespace=True)]
    description: Text = ""
    tags: list[Label] = Field(default_factory=list, max_length=50)
    genres: list[Label] = Field(default_factory=list, max_length=10)
    creator_id: Annotated[str, StringConstraints(max_length=128, strip_whitespace=True)] = ""
    created_at: Timestamp | None = None
    sponsored: bool = False


class ReloadIn(BaseModel):
    model_config = BODY

    version: Id | None = Field(
        None, description="A version folder name under <home>/models; default the newest."
    )
