"""``adrec experiment``: run the closed loop on a simulated market and compare policies (see
:mod:`adrec.experiment`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from adrec.cli.app import ProgressOption, app, friendly, out

experiment_app = typer.Typer(help="Run live experiments on a simulated market and compare arms.", no_args_is_help=True)
app.add_typer(experiment_app, name="experiment")


def _ci(v: dict[str, float], scale: float = 1.0, fmt: str = ".3f") -> str:
    return f"{v['mean'] * scale:{fmt}} [{v['ci_low'] * scale:{fmt}}, {v['ci_high'] * scale:{fmt}}]"


def _table(report: dict[str, object]) -> Table:
    arms = report["arms"]
    assert isinstance(arms, list)
    table = Table(title="Arms (95 % CI, clustered by user)")
    for column in ("arm", "users", "requests", "CTR", "clicks / request", "revenue / request", "ledger spend"):
        table.add_column(column, justify="left" if column == "arm" else "right")
    for a in arms:
        m, t = a["metrics"], a["totals"]
        table.add_row(
            a["name"],
            f"{a['users']:,}",
            f"{int(t['requests']):,}",
            _ci(m["ctr"], 100, ".2f") + " %",
            _ci(m["clicks_per_request"]),
            _ci(m["revenue_per_request"]),
            f"{t['spend']:,.2f}",
        )
    return table


def _comparisons(report: dict[str, object]) -> Table:
    table = Table(title="Against the baseline")
    for column in ("arm", "metric", "lift", "95 % CI of the lift", "p-value"):
        table.add_column(column, justify="left" if column in ("arm", "metric") else "right")
    comparisons = report["comparisons"]
    assert isinstance(comparisons, list)
    for c in comparisons:
        table.add_row(
            f"{c['arm']} vs {c['baseline']}",
            c["metric"],
            f"{c['lift']:+.1%}",
            f"[{c['lift_ci_low']:+.1%}, {c['lift_ci_high']:+.1%}]",
            f"{c['p_value']:.3g}",
        )
    return table


def show(report: dict[str, object]) -> None:
    out.print(_table(report))
    out.print(_comparisons(report))
    captured = report.get("gain_captured") or {}
    assert isinstance(captured, dict)
    if captured:
        shares = ", ".join(f"{arm} {share:.0%}" for arm, share in captured.items())
        out.print(f"Share of the oracle's CTR gain over random captured: {shares}", highlight=False)
    out.print(
        f"{report['requests_per_second']:,.0f} simulated requests/s end to end ({report['seconds']:.1f} s, market, "
        "warm-up history and training included)",
        highlight=False,
    )


@experiment_app.command(
    "run",
    epilog=(
        "Examples:  \n`adrec experiment run --config config/experiment.example.toml --json out.json`  \n"
        "`adrec experiment run --config exp.toml --db sqlite:///exp.db --plot arms.png`"
    ),
)
@friendly
def run(
    config: Annotated[Path, typer.Option("--config", help="The experiment (see config/experiment.example.toml).")],
    db: Annotated[
        str, typer.Option("--db", help="A new store to run in (default: in memory, gone afterwards).")
    ] = "sqlite://",
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the full report to this file.")] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Also draw the report into this PNG.")] = None,
    progress: ProgressOption = True,
) -> None:
    """Serve a simulated market live through the pipeline, arm by arm, and compare the arms with CIs."""
    from adrec.exceptions import ConfigError
    from adrec.experiment import ExperimentConfig, run_experiment
    from adrec.store import open_store

    cfg = ExperimentConfig.from_toml(config)
    with open_store(db) as store:
        if store.stats().users:
            raise ConfigError(f"the store {db} is not empty: an experiment writes its market into a new store")
        report = run_experiment(cfg, store, progress=progress).as_dict()
    if json_out is not None:
        json_out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    show(report)
    if plot is not None:
        from adrec.experiment.plots import plot_report

        out.print(f"Plot: {plot_report(report, plot)}", highlight=False)


@experiment_app.command("report", epilog="Example:  \n`adrec experiment report out.json`")
@friendly
def report(
    path: Annotated[Path, typer.Argument(help="A report written by `adrec experiment run --json`.")],
    plot: Annotated[Path | None, typer.Option("--plot", help="Also draw it into this PNG.")] = None,
) -> None:
    """Show a saved experiment report again."""
    from adrec.exceptions import ValidationError

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValidationError("path", f"{path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValidationError("path", f"{path} is not a JSON report ({err})") from None
    shape: dict[str, type | tuple[type, ...]] = {
        "arms": list,
        "comparisons": list,
        "seconds": (int, float),
        "requests_per_second": (int, float),
    }
    if not isinstance(data, dict) or any(not isinstance(data.get(k), t) for k, t in shape.items()):
        raise ValidationError(
            "path", f"{path} is not a report of `adrec experiment run --json` (needs {', '.join(shape)})"
        )
    show(data)
    if plot is not None:
        from adrec.experiment.plots import plot_report

        out.print(f"Plot: {plot_report(data, plot)}", highlight=False)
