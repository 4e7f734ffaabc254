"""What an entry of the Redis Streams bus holds, and the message ids of its events.

An entry published by this version holds up to `ENTRY_EVENTS` events of one partition:
fields `n` (how many) and `e` (a JSON array of them). Each event is delivered on its own,
as "<partition>:<entry id>:<index>:<n>", so a consumer may acknowledge some of an entry's
events and not others (`redis_lua.ACK_LUA`). An entry of one event object without `n`
(written by an older version, or by hand) is delivered as "<partition>:<entry id>".
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import msgspec

from recomatrix.events.base import Delivery
from recomatrix.types import Event

ENTRY_EVENTS = 128  # events per entry at most: bounds how far a read may pass `max_events`

# A stream entry: its id and its fields, as redis-py's dict or (XREADGROUP on one server,
# read raw: see `RedisStreamsBus.__init__`) Redis's flat [name, value, ...] list.
Entry = tuple[bytes, "dict[bytes, bytes] | list[bytes]"]
# What cannot be delivered: (entry id, reason, payload, the message ids to acknowledge).
Poison = tuple[bytes, str, bytes, list[str]]


@dataclass(slots=True)
class Decoded:
    """An entry's events by index, and what could not be read: (indices, reason)."""

    events: list[tuple[int, Event]] = field(default_factory=list)
    poison: list[tuple[list[int], str]] = field(default_factory=list)


def payloads(events: Sequence[Event]) -> list[tuple[int, bytes]]:
    """(n, payload) of the entries holding `events`, in order, `ENTRY_EVENTS` at most each.
    msgspec writes an entry's events as one array, the same bytes as `encode` per event
    joined, about five times as fast (every event published goes through here)."""
    return [
        (len(chunk), _ENCODER.encode(chunk))
        for chunk in (events[k : k + ENTRY_EVENTS] for k in range(0, len(events), ENTRY_EVENTS))
    ]


def encode(event: Event) -> bytes:
    return _ENCODER.encode(event)


def decode(payload: bytes | msgspec.Raw) -> Event:
    """The event in a payload, checked: field types, the event type, non-empty ids
    (msgspec decodes and checks in one pass, several times faster than loading a dict and
    checking it in Python: a worker decodes every event)."""
    try:
        event = _EVENT_DECODER.decode(payload)
    except msgspec.DecodeError as error:  # its ValidationError too: names the field
        raise ValueError(str(error)) from None
    problem = _problem(event)
    if problem:
        raise ValueError(problem)
    return _interned(event)


def decode_entry(payload: bytes, n: int) -> Decoded:
    """The `n` events of an entry's payload. A payload that is not an array of `n` values is
    poison whole; otherwise only the values that are not valid events are."""
    decoded = Decoded()
    try:
        events = _BATCH_DECODER.decode(payload)
    except msgspec.DecodeError:  # one bad event: read them one by one below
        pass
    else:
        if len(events) == n:
            for index, event in enumerate(events):
                problem = _problem(event)
                if problem:
                    decoded.poison.append(([index], f"ValueError: {problem}"))
                else:
                    decoded.events.append((index, _interned(event)))
            return decoded
    try:
        values = _RAW_DECODER.decode(payload)
    except msgspec.DecodeError as error:
        return Decoded(poison=[(list(range(n)), f"ValueError: {error}")])
    if len(values) != n:
        reason = f"ValueError: the entry holds {len(values)} events, not n={n}"
        return Decoded(poison=[(list(range(n)), reason)])
    for index, value in enumerate(values):
        try:
            decoded.events.append((index, decode(value)))
        except ValueError as error:
            decoded.poison.append(([index], f"ValueError: {error}"))
    return decoded


def read_entries(
    partition: int, entries: list[Entry], acked: Mapping[str, set[int]]
) -> tuple[list[Delivery], list[Poison]]:
    """The events of a partition's `entries`, each its own delivery, but for the indices
    `acked` says were acknowledged (entry id -> indices); and what cannot be read."""
    deliveries: list[Delivery] = []
    poison: list[Poison] = []
    prefix = f"{partition}:"
    for entry_id, fields in entries:
        entry = entry_id.decode()
        try:
            payload, n = _fields(fields)
        except (ValueError, KeyError) as error:
            poison.append((entry_id, f"{type(error).__name__}: {error}", b"", [prefix + entry]))
            continue
        if n is None:  # one event object (an older version's entry)
            try:
                deliveries.append(Delivery(prefix + entry, decode(payload)))
            except (ValueError, TypeError) as error:
                reason = f"{type(error).__name__}: {error}"
                poison.append((entry_id, reason, payload, [prefix + entry]))
            continue
        decoded, done = decode_entry(payload, n), acked.get(entry, set())
        for index, event in decoded.events:
            if index not in done:
                deliveries.append(Delivery(f"{prefix}{entry}:{index}:{n}", event))
        for indices, reason in decoded.poison:
            fresh = [f"{prefix}{entry}:{k}:{n}" for k in indices if k not in done]
            if fresh:
                poison.append((entry_id, f"{reason} (events {indices} of {n})", payload, fresh))
    return deliveries, poison


def by_entry(
    message_ids: Sequence[str],
) -> tuple[dict[int, list[str]], dict[int, dict[str, list[str]]]]:
    """Message ids grouped for acknowledging: partition -> ids of entries of one event
    object, and partition -> entry id -> [n, indices of its events]."""
    whole: dict[int, list[str]] = defaultdict(list)
    parts: dict[int, dict[str, list[str]]] = defaultdict(dict)
    for message_id in message_ids:
        fields = message_id.split(":")
        if len(fields) == 2:
            whole[int(fields[0])].append(fields[1])
        else:
            p, entry_id, index, n = fields
            parts[int(p)].setdefault(entry_id, [n]).append(index)
    return whole, parts


def _fields(fields: dict[bytes, bytes] | list[bytes] | None) -> tuple[bytes, int | None]:
    """An entry's payload `e` and event count `n` (None: an entry of one event object),
    from a dict or Redis's flat name, value list."""
    if not fields:
        raise KeyError("the entry has no field 'e'")
    if isinstance(fields, list):
        fields = dict(zip(fields[::2], fields[1::2], strict=True))
    if b"e" not in fields:
        raise KeyError("the entry has no field 'e'")
    n = fields.get(b"n")
    return fields[b"e"], None if n is None else int(n)


def _problem(event: Event) -> str | None:
    for name in ("event_id", "user_id", "item_id"):
        if not getattr(event, name):
            return f"{name} must be a non-empty string"
    return None


def _interned(event: Event) -> Event:
    # Interned: every user's history, recent items and watched map then share one string
    # per item instead of one per event, which saves memory and, in a worker with grown
    # states, made encoding those lists a third faster (fewer cache lines to walk).
    _set_field(event, "item_id", sys.intern(event.item_id))
    return event


def _plain(value: object) -> object:
    """What msgspec cannot write itself: a context given as a read-only mapping."""
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"cannot encode a {type(value).__name__} in an event")


_ENCODER = msgspec.json.Encoder(enc_hook=_plain)
_EVENT_DECODER = msgspec.json.Decoder(Event)
_BATCH_DECODER = msgspec.json.Decoder(list[Event])
_RAW_DECODER = msgspec.json.Decoder(list[msgspec.Raw])
_set_field = msgspec.structs.force_setattr  # Event is frozen; a decoded one is ours alone yet
