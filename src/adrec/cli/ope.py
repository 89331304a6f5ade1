"""``adrec ope``: off-policy evaluation — a policy's value estimated from logs another policy collected (see
:mod:`adrec.evaluation.ope`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from adrec.cli.app import DbOption, ProgressOption, app, err, friendly, out, parse_time, settings
from adrec.exceptions import ConfigError

ope_app = typer.Typer(
    help="Off-policy evaluation: estimate a policy's value from logged data, with bootstrap intervals.\n\n"
    "`adrec ope --db URL --policy-model DIR` estimates a candidate model's CTR, clicks and revenue per request from "
    "the requests adrec served with exploration (their propensities logged), replaying each through the "
    "candidate's pipeline at its logged time; `adrec ope obd` evaluates policies on the Open Bandit Dataset.",
    no_args_is_help=True,
    invoke_without_command=True,
)
app.add_typer(ope_app, name="ope")


FoldsOption = Annotated[
    int, typer.Option(min=1, help="Cross-fitting folds of the reward model (by user on adrec's own logs).")
]
BootstrapOption = Annotated[
    int, typer.Option(min=1, help="Bootstrap replicates of every interval (users resampled on adrec's own logs).")
]
TauOption = Annotated[float, typer.Option(min=0, help="Switch-DR's weight threshold.")]
LambdaOption = Annotated[float, typer.Option("--lambda", min=0, help="DRos's shrinkage.")]
JsonOutOption = Annotated[
    Path | None, typer.Option("--json", help="Write the report here (estimates with their CI under `estimates`).")
]


def _write(report: dict[str, Any], json_out: Path | None) -> None:
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=2) + "\n")
        out.print(f"wrote {json_out}")


def _serving(pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pipeline settings (numbers, or the exploration's name) over the deployment's."""
    import dataclasses

    from adrec.serving.pipeline import PipelineConfig

    fields = {f.name: f for f in dataclasses.fields(PipelineConfig)}
    out_: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or key not in fields:
            raise ConfigError(f"--serving {pair!r}: expected KEY=VALUE with KEY one of {', '.join(fields)}")
        kind = fields[key].type
        try:
            out_[key] = int(value) if kind == "int" else value.strip() if kind == "str" else float(value)
        except ValueError:
            raise ConfigError(f"--serving {key}: {value!r} is not a {kind}") from None
    return out_


def _when(ts: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _store_table(report: dict[str, Any]) -> Table:
    window = report["window"]
    title = (
        f"{report['policy'].get('model')} on {report['requests']:,} logged requests ({report['rows']:,} impressions, "
        f"{report['users']:,} users; overlap: mean weight {report['overlap']['mean_weight']:.3f}, effective "
        f"sample size {report['overlap']['effective_sample_size']:,.0f}); "
        f"{int((1 - report['settings']['alpha']) * 100)} % bootstrap intervals over users; logged "
        f"{_when(window['since'])} – {_when(window['until'])}"
    )
    table = Table(title=title)
    metrics = list(report["estimates"])
    table.add_column("estimator")
    for m in metrics:
        table.add_column(m, justify="right")
    table.add_row("logged policy", *(f"{report['logged'][m]:.5f}" for m in metrics))
    for name in report["estimates"][metrics[0]]:
        cells = []
        for m in metrics:
            e = report["estimates"][m][name]
            cells.append(f"{e['estimate']:.5f} [{e['ci_low']:.5f}, {e['ci_high']:.5f}]")
        table.add_row(name, *cells)
    return table


@ope_app.callback()
@friendly
def store(
    ctx: typer.Context,
    db: DbOption = None,
    policy_model: Annotated[
        Path | None,
        typer.Option(
            "--policy-model",
            help="The candidate's model folder (`adrec train --out DIR`; its click model in DIR/ctr if it has one).",
        ),
    ] = None,
    serving: Annotated[
        list[str] | None,
        typer.Option(
            "--serving",
            help="The candidate's pipeline settings, KEY=VALUE, over the deployment's (--config); repeat it, e.g. "
            "`--serving exploration=egreedy --serving epsilon=0.1`.",
        ),
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Logged requests from this time (epoch seconds or ISO date).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="... and before this one.")] = None,
    runs: Annotated[int, typer.Option(min=1, help="Selections drawn per replayed request (its slot marginals).")] = 100,
    folds: FoldsOption = 3,
    bootstrap: BootstrapOption = 1000,
    tau: TauOption = 100.0,
    lambda_: LambdaOption = 100.0,
    seed: Annotated[int, typer.Option(help="Seed of the folds and the bootstrap.")] = 0,
    json_out: JsonOutOption = None,
    progress: ProgressOption = True,
) -> None:
    """Estimate what a candidate model would earn (CTR, clicks and revenue per request) from the requests adrec
    served with exploration (their propensities logged), before it serves anyone: every logged request is replayed
    through the candidate's pipeline at its logged time.

    Example: `adrec ope --db sqlite:///adrec-demo/adrec.db --policy-model models/candidate --json ope.json`.
    `adrec ope obd --help` evaluates policies on the Open Bandit Dataset instead.
    """
    given = (
        [
            name
            for name, value in (
                ("--db", db),
                ("--policy-model", policy_model),
                ("--json", json_out),
                ("--since", since),
            )
            if value is not None
        ]
        + (["--serving"] if serving else [])
        + (["--until"] if until is not None else [])
    )
    if ctx.invoked_subcommand is not None:
        if given:
            raise ConfigError(
                f"{', '.join(given)} belong to `adrec ope --db URL --policy-model DIR`, not to `adrec ope "
                f"{ctx.invoked_subcommand}` (see `adrec ope {ctx.invoked_subcommand} --help`)"
            )
        return
    if not given:
        out.print(ctx.get_help())
        return
    if policy_model is None:
        raise ConfigError("--policy-model DIR is required: the candidate model to estimate")
    import dataclasses

    from adrec.serving.pipeline import PipelineConfig
    from adrec.serving.replay import evaluate_logged
    from adrec.store import open_store

    cfg = settings(db_url=db)
    overrides = _serving(serving or [])
    config = dataclasses.replace(PipelineConfig.from_settings(cfg), **overrides)
    with open_store(cfg.db_url, create=False) as st:
        report = evaluate_logged(
            st,
            policy_model,
            config,
            since=None if since is None else parse_time(since, "--since"),
            until=None if until is None else parse_time(until, "--until"),
            runs=runs,
            folds=folds,
            n_bootstrap=bootstrap,
            tau=tau,
            lambda_=lambda_,
            seed=seed,
            progress=progress,
            describe={"model": str(policy_model), "serving": overrides},
        )
    out.print(_store_table(report))
    for warning in report["warnings"]:
        err.print(f"[bold yellow]warning:[/] {warning}", highlight=False)
    _write(report, json_out)


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
    json_out: JsonOutOption = None,
    n_sim: Annotated[int, typer.Option(min=1, help="Monte Carlo draws for the BTS slot probabilities.")] = 100_000,
    folds: FoldsOption = 3,
    bootstrap: BootstrapOption = 1000,
    tau: TauOption = 100.0,
    lambda_: LambdaOption = 100.0,
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
    _write(report, json_out)
