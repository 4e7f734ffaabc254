"""Request bodies of the HTTP API, validated at the edge with messages that name the field."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from recomatrix.types import EventType

Id = Annotated[str, StringConstraints(min_length=1, max_length=128, strip_whitespace=True)]
Label = Annotated[str, StringConstraints(min_length=1, max_length=64, strip_whitespace=True)]


def _epoch_seconds(value: float | datetime) -> float:
    seconds = value.timestamp() if isinstance(value, datetime) else float(value)
    if not 0 <= seconds <= 4_102_444_800:
        raise ValueError("must be epoch seconds between 1970 and 2100, or an ISO-8601 time")
    return seconds


# Epoch seconds or an ISO-8601 time; validated to epoch seconds in 1970..2100.
Timestamp = Annotated[float | datetime, AfterValidator(_epoch_seconds)]


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event_id: Id | None = Field(
        None, description="Idempotency key: the same id is applied once. Generated if absent."
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
    model_config = ConfigDict(extra="forbid")

    events: list[EventIn] = Field(min_length=1)


class ItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    item_id: Id
    title: Annotated[str, StringConstraints(min_length=1, max_length=500, strip_whitespace=True)]
    description: str = ""
    tags: list[Label] = Field(default_factory=list, max_length=50)
    genres: list[Label] = Field(default_factory=list, max_length=10)
    creator_id: Annotated[str, StringConstraints(max_length=128, strip_whitespace=True)] = ""
    created_at: Timestamp | None = None
    sponsored: bool = False
