"""The tier's one Redis URL gives each part (store, bus, item feed) the options it reads."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from recomatrix.features.resp import key_namespace
from recomatrix.tier.urls import part_url

URL = "redis://h:1/0?claim_ttl_s=600&partitions=16&namespace=prod&item_ttl_s=86400"


def options(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def test_each_part_gets_its_own_options_and_the_shared_namespace() -> None:
    assert options(part_url(URL, "store")) == {
        "claim_ttl_s": ["600"],
        "namespace": ["prod"],
        "item_ttl_s": ["86400"],
    }
    assert options(part_url(URL, "bus")) == {"partitions": ["16"], "namespace": ["prod"]}
    assert options(part_url(URL, "feed")) == {"namespace": ["prod"]}
    assert part_url("redis://h:1/0?claim_ttl_s=600", "feed") == "redis://h:1/0"


def test_an_option_no_part_reads_is_an_error_naming_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown option\(s\) claim_ttl .*claim_ttl_s"):
        part_url("redis://h:1/0?claim_ttl=600", "store")


@pytest.mark.parametrize("namespace", ["", "a{b}", "{rx}", "a b"])
def test_a_namespace_that_would_move_the_cluster_hash_tags_is_refused(namespace: str) -> None:
    with pytest.raises(ValueError, match="without braces"):
        key_namespace(namespace)
