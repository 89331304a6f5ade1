"""The command line: exit codes, one-line errors, and commands that work end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from adrec.cli.main import app
from adrec.store import open_store

runner = CliRunner()


def test_every_command_has_help_with_examples() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("simulate", "import", "stats", "demo"):
        assert command in result.output
        sub = runner.invoke(app, [command, "--help"])
        assert sub.exit_code == 0, sub.output
        assert "Example" in sub.output, command


def test_import_help_lists_every_format() -> None:
    from adrec.data.importers import IMPORTERS

    out = runner.invoke(app, ["import", "--help"], terminal_width=200).output
    for name in IMPORTERS:
        assert name in out


def test_simulate_then_stats_json(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/m.db"
    args = [
        "simulate",
        "--db",
        db,
        "--users",
        "300",
        "--advertisers",
        "5",
        "--campaigns",
        "10",
        "--ads",
        "40",
        "--impressions",
        "5000",
        "--seed",
        "3",
        "--no-progress",
        "--truth",
        str(tmp_path / "truth"),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "truth").is_dir()
    stats = runner.invoke(app, ["stats", "--db", db, "--json"])
    assert stats.exit_code == 0, stats.output
    data = json.loads(stats.output)
    assert (data["users"], data["ads"], data["events"]["impression"]) == (300, 40, 5000)
    assert 0 < data["ctr"] < 0.2


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["stats", "--db", "mysql://nope"], "no store backend"),
        (["import", "nonsense-format", "."], "nonsense-format"),
        (["import", "movielens", "/definitely/not/here"], "/definitely/not/here"),
    ],
)
def test_user_mistakes_are_one_line_and_exit_1(args: list[str], needle: str, tmp_path: Path) -> None:
    if args[0] == "import":
        args = [*args, "--db", f"sqlite:///{tmp_path}/x.db"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert needle in result.output
    assert "Traceback" not in result.output


def test_bad_row_error_names_file_line_and_field(tmp_path: Path) -> None:
    csv = tmp_path / "criteo.txt"
    header = "label," + ",".join(f"I{i}" for i in range(1, 14)) + "," + ",".join(f"C{i}" for i in range(1, 27))
    good = "0," + ",".join(["1"] * 13) + "," + ",".join(["05db9164"] * 26)
    bad = "7," + ",".join(["1"] * 13) + "," + ",".join(["05db9164"] * 26)
    csv.write_text(f"{header}\n{good}\n{bad}\n")
    db = f"sqlite:///{tmp_path}/x.db"
    result = runner.invoke(app, ["import", "criteo", str(csv), "--db", db, "--no-progress"])
    assert result.exit_code == 1
    assert f"{csv}:3" in result.output.replace("\n", "")
    assert "label" in result.output
    with open_store(db) as store:
        assert store.stats().ctr_examples == 0  # nothing of the failing file was written
    skipped = runner.invoke(app, ["import", "criteo", str(csv), "--db", db, "--no-progress", "--skip-bad"])
    assert skipped.exit_code == 0, skipped.output
    with open_store(db) as store:
        assert store.stats().ctr_examples == 1


def test_real_process_demo(tmp_path: Path) -> None:
    """The installed console script, as a person runs it."""
    exe = Path(sys.executable).with_name("adrec")
    proc = subprocess.run(
        [str(exe), "demo", "--dir", str(tmp_path / "demo"), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    for section in ("Top categories", "Full-ranking evaluation", "chosen on validation", "Over all users"):
        assert section in proc.stdout, section
    from adrec.demo import demo_config

    config = demo_config(42)
    with open_store(f"sqlite:///{tmp_path}/demo/adrec.db") as store:
        stats = store.stats()
    assert stats.users == config.n_users
    assert stats.events["impression"] == config.n_impressions
    assert 0.01 <= stats.ctr <= 0.05
