"""Prometheus metrics shared by the engine, the stream processor and the server."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Buckets from 50 µs to 1 s: the request path lives in the low milliseconds.
_LATENCY_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
)  # fmt: skip

STAGE_SECONDS = Histogram(
    "recomatrix_stage_seconds",
    "Time spent in each stage of the recommendation request path.",
    ["stage"],
    buckets=_LATENCY_BUCKETS,
)
RECOMMENDATIONS = Counter("recomatrix_recommendations_total", "Recommendation requests served.")
EVENTS_ACCEPTED = Counter("recomatrix_events_accepted_total", "Events accepted onto the bus.")
EVENTS_APPLIED = Counter(
    "recomatrix_events_applied_total", "Events applied by the stream processor."
)
EVENT_LAG_SECONDS = Histogram(
    "recomatrix_event_visible_seconds",
    "From an event's acceptance to its effect being visible in the online store.",
    buckets=_LATENCY_BUCKETS,
)
INDEX_ITEMS = Gauge("recomatrix_index_items", "Items in the vector index.", ["part"])
ITEMS_INDEXED_SECONDS = Histogram(
    "recomatrix_item_indexed_seconds",
    "From POST /v1/items to the item being searchable.",
    buckets=_LATENCY_BUCKETS,
)
MODEL_INFO = Gauge(
    "recomatrix_model_info", "The model version being served (value 1).", ["version"]
)
