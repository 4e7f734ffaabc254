"""A Redis that lost its Lua scripts (restarted, or failed over to a replica that never
loaded them) answers NOSCRIPT: every part of the tier loads them again by itself, and
nothing is appended, acknowledged or counted twice on the way."""

from __future__ import annotations

import time

import pytest
import redis

from recomatrix.events.redis import RedisStreamsBus
from recomatrix.features.redis import RedisOnlineStore
from recomatrix.features.state import UserState
from recomatrix.stream.updates import item_counts
from recomatrix.types import Event

URL_FIXTURE = {"redis": "redis_url", "redis-cluster": "redis_cluster_url"}


def forget_scripts(client: redis.Redis | redis.RedisCluster, key: str) -> None:
    """SCRIPT FLUSH on the node holding `key`, as its restart leaves it; on a cluster the
    other masters keep their scripts (a publish then half succeeds: no partition may be
    appended twice)."""
    if isinstance(client, redis.RedisCluster):
        node = client.get_node_from_key(key)
        with redis.Redis(host=node.host, port=node.port) as one:
            one.script_flush()
        others = [n for n in client.get_primaries() if n.name != node.name]
        assert others, "the cluster has one master: the half-loaded case needs more"
    else:
        client.script_flush()


def drain(bus: RedisStreamsBus, store: RedisOnlineStore, want: int) -> list[Event]:
    """Consume, apply and acknowledge until `want` events came (or 10 s passed)."""
    got: list[Event] = []
    deadline = time.monotonic() + 10
    while len(got) < want and time.monotonic() < deadline:
        deliveries = bus.consume("g", "c1", max_events=1000, block_s=0.05)
        events = [d.event for d in deliveries]
        store.add_item_counts(item_counts(events))
        store.put_users([UserState(e.user_id) for e in events],
                        applied_events=[e.event_id for e in events])  # fmt: skip
        bus.ack("g", [d.message_id for d in deliveries])
        got += events
    return got


@pytest.mark.parametrize("backend", ["redis", "redis-cluster"])
def test_every_part_loads_its_scripts_again_after_redis_lost_them(
    backend: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue(URL_FIXTURE[backend])
    bus = RedisStreamsBus.from_url(f"{url}?partitions=4")
    store = RedisOnlineStore.from_url(url)
    now = time.time()

    def clicks(tag: str) -> list[Event]:  # 40 users spread over every partition, one item
        return [Event(f"{tag}-{k}", f"user-{k}", "item-1", "click", now) for k in range(40)]

    bus.publish(clicks("before"))
    assert len(drain(bus, store, 40)) == 40
    forget_scripts(bus.client, bus.streams[0])
    bus.publish(clicks("after"))  # the publishing script, on every partition's node
    got = drain(bus, store, 40)  # the acknowledging and the counting scripts
    # Each event once: a partition appended before another was refused is not sent again.
    assert sorted(e.event_id for e in got) == sorted(e.event_id for e in clicks("after"))
    assert not bus.consume("g", "c1", max_events=1000, block_s=0.2)
    assert bus.lag("g") == 0
    (item,) = store.get_items(["item-1"])
    assert item is not None and item.windows.get("5m", now=now)["click"] == 80
    bus.close()
    store.close()
