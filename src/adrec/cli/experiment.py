"""``adrec experiment``: run the closed loop on a simulated market and compare policies (see
:mod:`adrec.experiment`)."""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from adrec.cli.app import ProgressOption, app, friendly, out

experiment_app = typer.Typer(help="Run live experiments on a simulated market and compare arms.", no_args_is_help=True)
app.add_typer(experiment_app, name="experiment")


def _ci(v: dict[str, float] | None, scale: float = 1.0, fmt: str = ".3f") -> str:
    if v is None:  # a report written before the metric existed
        return "—"
    return f"{v['mean'] * scale:{fmt}} [{v['ci_low'] * scale:{fmt}}, {v['ci_high'] * scale:{fmt}}]"


def _table(report: dict[str, object]) -> Table:
    arms = report["arms"]
    assert isinstance(arms, list)
    table = Table(title="Arms (95 % CI, clustered by user)")
    columns = ("arm", "users", "requests", "CTR", "clicks / user", "revenue / user", "revenue / request", "spend")
    for column in columns:
        table.add_column(column, justify="left" if column == "arm" else "right")
    for a in arms:
        m, t = a["metrics"], a["totals"]
        table.add_row(
            a["name"],
            f"{a['users']:,}",
            f"{int(t['requests']):,}",
            _ci(m["ctr"], 100, ".2f") + " %",
            _ci(m.get("clicks_per_user")),
            _ci(m.get("revenue_per_user")),
            _ci(m["revenue_per_request"]),
            f"{t['spend']:,.2f}",
        )
    return table


#: The comparisons printed (the JSON report has every metric of :data:`adrec.experiment.live.METRICS`).
_SHOWN = ("ctr", "clicks_per_user", "revenue_per_user", "revenue_per_request", "welfare_per_user", "visits_per_user")


def _comparisons(report: dict[str, object]) -> Table:
    table = Table(title="Against the baseline (every metric is in the JSON report)")
    for column in ("arm", "metric", "lift", "95 % CI of the lift", "p-value"):
        table.add_column(column, justify="left" if column in ("arm", "metric") else "right")
    comparisons = report["comparisons"]
    assert isinstance(comparisons, list)
    for c in comparisons:
        if c["metric"] not in _SHOWN:
            continue
        table.add_row(
            f"{c['arm']} vs {c['baseline']}",
            c["metric"],
            f"{c['lift']:+.1%}",
            f"[{c['lift_ci_low']:+.1%}, {c['lift_ci_high']:+.1%}]",
            f"{c['p_value']:.3g}",
        )
    return table


def _market_side(report: dict[str, object]) -> Table | None:
    """Calibration, coverage, budgets, pacing, new ads and regret per arm (reports written before these were
    measured have none)."""
    arms = report["arms"]
    assert isinstance(arms, list)
    if not all("summary" in a for a in arms):
        return None
    table = Table(title="Market side")
    columns = ("arm", "PCOC", "ECE", "coverage", "new-ad share", "budget used", "pacing error", "regret (clicks)")
    for column in columns:
        table.add_column(column, justify="left" if column == "arm" else "right")
    for a in arms:
        m, s, t = a["metrics"], a["summary"], a["totals"]
        table.add_row(
            a["name"],
            f"{m['pcoc']['mean']:.2f}",
            f"{s['ece']:.4f}",
            f"{s['coverage']:.0%}",
            f"{m['new_ad_share']['mean']:.1%}",
            f"{s['budget_utilisation']:.0%}",
            f"{s['pacing_error']:.2f}",
            f"{t['regret']:,.0f}",
        )
    return table


def show(report: dict[str, object]) -> None:
    out.print(_table(report))
    out.print(_comparisons(report))
    market = _market_side(report)
    if market is not None:
        out.print(market)
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
        "`adrec experiment run --config exp.toml --db 'sqlite:///exp/{arm}.db' --plot arms.png`  \n"
        "`adrec experiment run --config exp.toml --http` (the arms served by real `adrec serve` processes)"
    ),
)
@friendly
def run(
    config: Annotated[Path, typer.Option("--config", help="The experiment (see config/experiment.example.toml).")],
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            help="Keep each arm's store: a store URL with {arm} in it, e.g. sqlite:///exp/{arm}.db (default: in "
            "memory, gone afterwards). Each arm serves from a store of its own (budget split).",
        ),
    ] = None,
    http: Annotated[
        bool,
        typer.Option(
            "--http",
            help="Serve the model and no-model arms through real `adrec serve` processes (one per arm, on its store, "
            "simulated clock) over HTTP instead of in this process: slower; checks the API decides as the pipeline.",
        ),
    ] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the full report to this file.")] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Also draw the report into this PNG.")] = None,
    progress: ProgressOption = True,
) -> None:
    """Serve a simulated market live through the pipeline, arm by arm, and compare the arms with CIs."""
    from adrec.exceptions import ConfigError
    from adrec.experiment import ExperimentConfig, run_experiment
    from adrec.store import open_store

    cfg = ExperimentConfig.from_toml(config)
    if http:
        cfg = cfg.model_copy(update={"http": True})
    if db is not None and "{arm}" not in db:
        raise ConfigError(
            f"--db {db}: put {{arm}} in it (each arm has a store of its own), e.g. sqlite:///exp/{{arm}}.db"
        )
    with ExitStack() as stack:
        stores = {}
        for arm in cfg.arms if db is not None else []:
            url = str(db).replace("{arm}", arm.name)
            stores[arm.name] = store = stack.enter_context(open_store(url))
            if store.stats().users:
                raise ConfigError(f"the store {url} is not empty: an experiment writes its market into new stores")
        report = run_experiment(cfg, stores, progress=progress).as_dict()
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
