"""``adrec ope``: off-policy evaluation — a policy's value estimated from logs another policy collected (see
:mod:`adrec.evaluation.ope`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from adrec.cli.app import app, friendly, out

ope_app = typer.Typer(
    help="Off-policy evaluation: estimate a policy's value from logged data, with bootstrap intervals.",
    no_args_is_help=True,
)
app.add_typer(ope_app, name="ope")


def _table(report: dict[str, Any]) -> Table:
    pct = 100.0
    title = (
        f"{report['policy']} on OBD {report['campaign']}: CTR estimated from {report['rounds']:,} logged rounds "
        f"(logged CTR {report['logged_ctr'] * pct:.3f} %; {int((1 - report['settings']['alpha']) * 100)} % "
        "bootstrap intervals)"
    )
    table = Table(title=title)
    for column in ("estimator", "CTR %", "CI low %", "CI high %", "relative to logged"):
        table.add_column(column, justify="left" if column == "estimator" else "right")
    for name, e in report["estimates"].items():
        table.add_row(
            name,
            f"{e['estimate'] * pct:.4f}",
            f"{e['ci_low'] * pct:.4f}",
            f"{e['ci_high'] * pct:.4f}",
            f"{e['estimate'] / report['logged_ctr']:.3f}" if report["logged_ctr"] else "—",
        )
    return table


@ope_app.command("obd")
@friendly
def obd(
    data: Annotated[
        Path,
        typer.Option(
            "--data",
            help="The Open Bandit Dataset: its root (holding random/CAMPAIGN/), a policy folder or a campaign folder.",
        ),
    ],
    campaign: Annotated[str, typer.Option(help="all, men or women.")] = "men",
    policy: Annotated[
        str,
        typer.Option(help="bts (ZOZOTOWN's Bernoulli Thompson sampling with its published prior) or random."),
    ] = "bts",
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the report here ({'estimates': {NAME: {...}}}).")
    ] = None,
    n_sim: Annotated[int, typer.Option(min=1, help="Monte Carlo draws for the BTS slot probabilities.")] = 100_000,
    folds: Annotated[int, typer.Option(min=1, help="Cross-fitting folds of the reward model.")] = 3,
    bootstrap: Annotated[int, typer.Option(min=1, help="Bootstrap replicates of every interval.")] = 1000,
    tau: Annotated[float, typer.Option(min=0, help="Switch-DR's weight threshold.")] = 100.0,
    lambda_: Annotated[float, typer.Option("--lambda", min=0, help="DRos's shrinkage.")] = 100.0,
    seed: Annotated[int, typer.Option(help="Seed of the folds, the Monte Carlo draws and the bootstrap.")] = 0,
) -> None:
    """Estimate a policy's CTR on the Open Bandit Dataset from its uniform-random logs, with every estimator.

    Example: `adrec ope obd --data ../shared/data/open_bandit_dataset_random --campaign men --policy bts
    --json ope-bts.json`
    """
    from adrec.evaluation.ope.obd import evaluate_obd

    report = evaluate_obd(
        data,
        campaign,
        policy,
        n_sim=n_sim,
        folds=folds,
        n_bootstrap=bootstrap,
        tau=tau,
        lambda_=lambda_,
        seed=seed,
    )
    out.print(_table(report))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=2) + "\n")
        out.print(f"wrote {json_out}")
