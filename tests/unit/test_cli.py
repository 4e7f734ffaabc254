"""The command line: help lists the commands, bad flags get a message with the fix."""

from __future__ import annotations

from typer.testing import CliRunner

from recomatrix.cli import app

runner = CliRunner()


def test_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("demo", "serve", "train"):
        assert command in result.output


def test_unknown_dataset_names_the_valid_ones() -> None:
    result = runner.invoke(app, ["demo", "--dataset", "netflix"])
    assert result.exit_code == 2
    assert "synthetic" in result.output and "movielens" in result.output


def test_unbuilt_backend_says_what_to_use_instead() -> None:
    result = runner.invoke(app, ["serve", "--backend", "redis"])
    assert result.exit_code == 2
    assert "--backend memory" in result.output


def test_unknown_setting_in_the_env_is_reported() -> None:
    result = runner.invoke(app, ["train"], env={"RECOMATRIX_RULES__NOPE": "1"})
    assert result.exit_code == 2
    assert "rules.nope" in result.output
