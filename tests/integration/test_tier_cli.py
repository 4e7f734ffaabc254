"""The server tier's commands refuse what cannot work, with a message that names the fix."""

from __future__ import annotations

import socket

import pytest
from typer.testing import CliRunner

from recomatrix.cli import app

runner = CliRunner()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_worker_without_a_redis_url_asks_for_one() -> None:
    result = runner.invoke(app, ["worker"], env={"RECOMATRIX_REDIS_URL": ""})
    assert result.exit_code == 2
    assert "--redis-url" in result.output


def test_an_unreachable_redis_is_named_before_anything_is_built() -> None:
    url = f"redis://127.0.0.1:{_closed_port()}/0"
    for args in (
        ["serve", "--backend", "redis", "--redis-url", url],
        ["worker", "--redis-url", url],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 2
        assert "cannot reach Redis" in result.output


def test_a_redis_url_option_no_part_reads_is_refused_naming_the_valid_ones(
    redis_url: str,
) -> None:
    result = runner.invoke(app, ["serve", "--backend", "redis", "--redis-url",
                                 redis_url + "?partition=2"])  # fmt: skip
    assert result.exit_code == 2
    assert "unknown option(s) partition" in result.output
    assert "claim_ttl_s" in result.output and "partitions" in result.output


def test_a_reachable_redis_url_with_options_for_every_part_passes_the_check(
    redis_url: str,
) -> None:
    import typer

    from recomatrix.cli.common import check_redis

    check_redis(redis_url + "?namespace=eu&maxlen=1000&claim_ttl_s=600&partitions=4")
    with pytest.raises(typer.BadParameter, match="without braces"):
        check_redis(redis_url + "?namespace=a{b}")


def test_the_store_and_the_bus_each_open_with_their_options_from_one_url(
    redis_url: str,
) -> None:
    from recomatrix.events.redis import RedisStreamsBus
    from recomatrix.features.redis import RedisOnlineStore
    from recomatrix.tier.urls import part_url

    url = redis_url + "?claim_ttl_s=600&partitions=4&namespace=urltest"
    store = RedisOnlineStore.from_url(part_url(url, "store"))
    bus = RedisStreamsBus.from_url(part_url(url, "bus"))
    assert store.claim_ttl_s == 600.0 and store.namespace == "urltest"
    assert bus.partitions == 4 and bus.namespace == "urltest"
    store.close()
    bus.close()


def test_two_namespaces_on_one_redis_do_not_see_each_others_item_changes(
    redis_url: str,
) -> None:
    import numpy as np

    from recomatrix.tier.broadcast import ItemFeed
    from recomatrix.tier.urls import part_url
    from recomatrix.types import Item

    feeds = {name: ItemFeed.from_url(part_url(f"{redis_url}?namespace={name}", "feed"), dim=2)
             for name in ("eu", "us")}  # fmt: skip
    feeds["eu"].publish_puts([Item("i1", "a title")], np.ones((1, 2), dtype=np.float32))
    assert [c.item_id for c in feeds["eu"].read(count=10)] == ["i1"]
    assert feeds["us"].read(count=10) == []
    with pytest.raises(ValueError, match="without braces"):
        ItemFeed.from_url(f"{redis_url}?namespace=a{{b}}", dim=2)
    for feed in feeds.values():
        feed.close()


def test_demo_points_to_serve_for_the_redis_tier() -> None:
    result = runner.invoke(app, ["demo", "--backend", "redis"])
    assert result.exit_code == 2
    assert "serve --backend redis" in result.output


def test_several_workers_need_the_redis_backend() -> None:
    result = runner.invoke(app, ["serve", "--workers", "2"])
    assert result.exit_code == 2
    assert "--backend redis" in result.output
