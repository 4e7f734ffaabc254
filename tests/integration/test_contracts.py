"""Every backend of a seam passes the same contract checks (recomatrix.testing)."""

from __future__ import annotations

import pytest

from recomatrix.events import MemoryEventBus, open_bus
from recomatrix.features import MemoryOnlineStore, open_store
from recomatrix.testing import check_event_bus, check_online_store

BACKENDS = ["memory", "redis", "redis-cluster"]
URL_FIXTURE = {"redis": "redis_url", "redis-cluster": "redis_cluster_url"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_online_store_backend_satisfies_the_contract(
    backend: str, request: pytest.FixtureRequest
) -> None:
    if backend == "memory":
        check_online_store(MemoryOnlineStore())
        return
    url = request.getfixturevalue(URL_FIXTURE[backend])
    check_online_store(open_store(url))
    # Idle state expires: a second store on the same server with sub-second TTLs.
    ttl = "user_ttl_s=0.3&item_ttl_s=0.3&claim_ttl_s=0.3"
    check_online_store(open_store(f"{url}?namespace=short&{ttl}"), idle_ttl_s=0.3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_event_bus_backend_satisfies_the_contract(
    backend: str, request: pytest.FixtureRequest
) -> None:
    if backend == "memory":
        check_event_bus(MemoryEventBus(), small_bus=MemoryEventBus(max_pending_log=3))
        return
    url = request.getfixturevalue(URL_FIXTURE[backend])
    check_event_bus(
        open_bus(f"{url}?partitions=4&lease_s=0.5"),
        consumer_timeout_s=0.5,
        small_bus=open_bus(f"{url}?namespace=small&partitions=2&max_backlog=3"),
    )
