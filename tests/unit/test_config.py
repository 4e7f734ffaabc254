"""Settings: defaults run the demo, env vars and files override, unknown keys are errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from recomatrix.config import Settings, load_settings


def test_defaults_are_the_embedded_demo() -> None:
    settings = load_settings(env={})
    assert settings == Settings()
    assert settings.server.port == 8000 and settings.data.dataset == "synthetic"


def test_env_vars_override_nested_fields() -> None:
    env = {"RECOMATRIX_RULES__MAX_PER_CREATOR": "1", "RECOMATRIX_RULES__SPONSORED_POSITIONS": "0,5"}
    rules = load_settings(env=env).rules
    assert rules.max_per_creator == 1 and rules.sponsored_positions == (0, 5)


def test_toml_file_is_read_and_overrides_win(tmp_path: Path) -> None:
    path = tmp_path / "recomatrix.toml"
    path.write_text("[server]\nport = 9000\nhost = '0.0.0.0'\n")
    settings = load_settings(path, env={}, overrides={"server": {"port": 9100}})
    assert settings.server.host == "0.0.0.0" and settings.server.port == 9100


def test_unknown_setting_is_an_error_naming_it() -> None:
    with pytest.raises(ValueError, match=r"rules\.max_per_creatr"):
        load_settings(env={"RECOMATRIX_RULES__MAX_PER_CREATR": "1"})


def test_unreadable_value_names_the_setting() -> None:
    with pytest.raises(ValueError, match=r"server\.port"):
        load_settings(env={"RECOMATRIX_SERVER__PORT": "eighty"})


def test_an_unknown_main_index_names_the_setting_and_the_choices() -> None:
    with pytest.raises(
        ValueError, match=r"retrieval\.main_index: 'faiss' is not one of hnswlib, usearch"
    ):
        load_settings(env={"RECOMATRIX_RETRIEVAL__MAIN_INDEX": "faiss"})
    assert load_settings(env={}).retrieval.main_index == "hnswlib"


def test_i8_vectors_need_the_usearch_main_index() -> None:
    with pytest.raises(ValueError, match=r"hnsw_dtype = 'i8' needs retrieval\.main_index"):
        load_settings(env={"RECOMATRIX_RETRIEVAL__HNSW_DTYPE": "i8"})
    with pytest.raises(ValueError, match=r"retrieval\.hnsw_dtype: 'i4'"):
        load_settings(overrides={"retrieval": {"main_index": "usearch", "hnsw_dtype": "i4"}})
    settings = load_settings(overrides={"retrieval": {"main_index": "usearch", "hnsw_dtype": "i8"}})
    assert settings.retrieval.hnsw_dtype == "i8"


def test_worker_cache_and_item_flush_settings_refuse_negative_values() -> None:
    with pytest.raises(ValueError, match=r"stream\.item_flush_s: -1\.0 is negative; use 0"):
        load_settings(env={"RECOMATRIX_STREAM__ITEM_FLUSH_S": "-1"})
    with pytest.raises(ValueError, match=r"stream\.cached_users: -5 is negative"):
        load_settings(env={"RECOMATRIX_STREAM__CACHED_USERS": "-5"})
    with pytest.raises(ValueError, match=r"stream\.cached_user_age_s: 0\.0 must be > 0"):
        load_settings(env={"RECOMATRIX_STREAM__CACHED_USER_AGE_S": "0"})
    with pytest.raises(ValueError, match=r"stream\.stuck_after_s: 0\.0 must be > 0"):
        load_settings(env={"RECOMATRIX_STREAM__STUCK_AFTER_S": "0"})
    with pytest.raises(ValueError, match=r"stream\.item_flush_merge_below: -1\.0 is negative"):
        load_settings(env={"RECOMATRIX_STREAM__ITEM_FLUSH_MERGE_BELOW": "-1"})
    with pytest.raises(ValueError, match=r"stream\.worker_nice: -3 must be 0-19"):
        load_settings(env={"RECOMATRIX_STREAM__WORKER_NICE": "-3"})
    settings = load_settings(env={"RECOMATRIX_STREAM__ITEM_FLUSH_S": "0"})
    assert settings.stream.item_flush_s == 0.0 and settings.stream.cached_users == 20_000
    assert settings.stream.worker_nice == 5
