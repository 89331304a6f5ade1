"""Model commands: ``train``, ``evaluate`` and ``recommend``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.table import Table

from adrec.cli.app import JsonOption, app, friendly, out, settings
from adrec.exceptions import ValidationError


def _model_names() -> str:
    from adrec.models import registered_models
    from adrec.models.ctr import registered_click_models

    ranking = ", ".join(f"`{n}`" for n in registered_models())
    click = ", ".join(f"`{n}`" for n in registered_click_models())
    return f"{ranking}; click models (`--task ctr` or `cvr`): {click}"


def parse_params(pairs: list[str] | None) -> dict[str, Any]:
    """``["factors=64", "lr=0.01", "device=cpu"]`` → ``{"factors": 64, "lr": 0.01, "device": "cpu"}``."""
    params: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ValidationError("--set", f"{pair!r} is not KEY=VALUE")
        try:
            params[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            params[key.strip()] = raw
    return params


DatasetOption = Annotated[
    str,
    typer.Option(
        "--dataset",
        "-d",
        help="`lightgcn:PATH`, `movielens:PATH` or `store:URL` (see adrec.store.datasets); with `--task ctr` or "
        "`cvr`, `store:URL` (the ads the store's ledger served, labelled by their clicks) or `sim:KEY=VALUE,...` "
        "(simulator settings, e.g. `sim:users=20000,impressions=5000000`); with `--task ctr` also an outside click "
        "log, `criteo:PATH`, `avazu:PATH`, `obd:PATH` (the Open Bandit Dataset) or `taobao:PATH` (the raw release's "
        "folder or DMR's file; their own columns: such a model cannot serve).",
    ),
]
TaskOption = Annotated[
    str,
    typer.Option(
        "--task",
        help="`ranking` (recommenders, top-K metrics), `ctr` (click models on user, ad and context features) or `cvr` "
        "(the same models predicting whether a click converts); ctr and cvr read `store:URL` (served ads and their "
        "clicks) or `sim:[KEY=VALUE,...]`, a simulated market with its true probabilities; ctr also `criteo:PATH`, "
        "`avazu:PATH`, `obd:PATH` and `taobao:PATH`.",
    ),
]
SetOption = Annotated[
    list[str] | None, typer.Option("--set", help="Hyper-parameter KEY=VALUE (JSON values), repeatable.")
]


@app.command(
    epilog=(
        "Examples:  \n`adrec evaluate -d lightgcn:../shared/data/gowalla_lightgcn --models popularity,gfcf --k 10,20 "
        "--json out.json`  \n`adrec evaluate -d store:sqlite:///adrec-demo/adrec.db --models popularity,itemknn`  \n"
        "`adrec evaluate --task ctr -d sim:users=20000,impressions=5000000 -m lr,dcnv2,lightgbm --json ctr.json`"
    )
)
@friendly
def evaluate(
    dataset: DatasetOption,
    models: Annotated[str, typer.Option("--models", "-m", help="Comma-separated registered model names.")],
    k: Annotated[str | None, typer.Option("--k", help="Comma-separated cut-offs (default 10,20).")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the full report as JSON here.")] = None,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Write the metric-vs-K plot here (default: next to --json).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for splits that need one.")] = None,
    task: TaskOption = "ranking",
) -> None:
    """Fit models on a dataset's train split and evaluate them by full ranking on its test split.

    Prints precision, recall, NDCG at each K plus catalogue coverage, novelty and intra-list diversity. With
    `--task ctr`: click models, by AUC, logloss, group AUC, PCOC, ECE and per-advertiser calibration, beside the
    base rate and the oracle (the market's true click probabilities); `--task cvr`: the same for conversions of
    clicks, beside the per-campaign conversion rate serving falls back to.
    """
    from adrec.evaluation.runner import compare_models, plot_metric_vs_k
    from adrec.models import registered_models
    from adrec.store.datasets import load_dataset

    names = [m.strip() for m in models.split(",") if m.strip()]
    if task in ("ctr", "cvr"):
        for flag, value in (("--k", k), ("--plot", plot)):
            if value is not None:
                raise ValidationError(flag, "applies to --task ranking (click models are scored on every test example)")
        _evaluate_ctr(dataset, names, json_path, task, settings(seed=seed).seed)
        return
    k = "10,20" if k is None else k
    if task != "ranking":
        raise ValidationError("--task", f"must be ranking, ctr or cvr (got {task!r})")
    unknown = [m for m in names if m not in registered_models()]
    if unknown:
        raise ValidationError("--models", f"unknown {unknown}; registered: {', '.join(registered_models())}")
    try:
        ks = sorted({int(x) for x in k.split(",") if x.strip()})
    except ValueError:
        raise ValidationError("--k", f"{k!r} is not a comma-separated list of integers") from None
    if not ks or min(ks) < 1:
        raise ValidationError("--k", "needs at least one cut-off >= 1")
    cfg = settings(seed=seed)
    data = load_dataset(dataset, seed=cfg.seed)
    out.print(
        f"[bold]{data.name}[/]: {data.train.n_users:,} users, {data.train.n_items:,} items, "
        f"{data.train.nnz:,} train / {data.test.nnz:,} test interactions",
        highlight=False,
    )
    report = compare_models(
        data, names, ks, on_result=lambda r: out.print(f"  {r.model}: fitted in {r.fit_seconds:.1f} s", highlight=False)
    )
    header, rows = report.table()
    # One column per model reads better than one column per metric once several K are asked for.
    table = Table(title="Full-ranking evaluation (training items excluded)")
    table.add_column("metric")
    for row in rows:
        table.add_column(row[0], justify="right")
    for i, name in enumerate(header[1:], start=1):
        table.add_row(name, *[row[i] for row in rows])
    out.print(table)
    if json_path is not None:
        out.print(f"report: {report.to_json(json_path)}", highlight=False)
    plot_path = plot or (json_path.with_suffix(".png") if json_path is not None else None)
    if plot_path is not None:
        out.print(f"plot: {plot_metric_vs_k(report, plot_path)}", highlight=False)


evaluate.__doc__ = f"{evaluate.__doc__}\n\nRegistered models: {_model_names()}"


def _click_dataset(dataset: str, task: str, seed: int) -> Any:
    """The :class:`~adrec.models.ctr.ClickDataset` of a dataset spec (``sim:`` or ``store:``): clicks of
    impressions (``ctr``) or conversions of clicks (``cvr``)."""
    target: Literal["click", "conversion"] = "click" if task == "ctr" else "conversion"
    kind, _, rest = dataset.partition(":")
    if kind == "store":
        from adrec.feedback.clicks import served_click_dataset
        from adrec.store import open_store
        from adrec.store.sql.engine import shown_url

        if not rest:
            raise ValidationError("--dataset", "store: needs the store's URL, e.g. store:sqlite:///adrec.db")
        with open_store(rest, create=False) as store:
            return served_click_dataset(store, target=target, name=f"store {shown_url(rest)}", progress=out.is_terminal)
    if kind in ("criteo", "avazu", "obd", "taobao"):
        from adrec.models.ctr.tabular import ctr_log_dataset, obd_click_dataset, taobao_click_dataset

        if task != "ctr" or not rest:
            need = "a path, e.g. criteo:data/criteo_sample.txt" if not rest else "--task ctr (it logs no conversions)"
            raise ValidationError("--dataset", f"{kind}: needs {need}")
        if kind == "obd":
            return obd_click_dataset(rest)
        return taobao_click_dataset(rest) if kind == "taobao" else ctr_log_dataset(kind, rest)
    if kind != "sim":
        raise ValidationError(
            "--dataset",
            f"--task {task} reads `sim:[KEY=VALUE,...]`, `store:URL`, `criteo:PATH`, `avazu:PATH`, `obd:PATH` or "
            "`taobao:PATH` datasets; "
            f"{kind!r} is not supported yet",
        )
    from adrec.simulate.ctr import simulated_click_dataset, simulation_from_spec
    from adrec.simulate.market import Market

    config = simulation_from_spec(dataset, seed=seed)  # the seed `adrec simulate` uses unless the spec names one
    out.print(
        f"simulating {config.n_impressions:,} impressions of {config.n_users:,} users and {config.n_ads:,} ads",
        highlight=False,
    )
    market = Market.generate(config)
    return simulated_click_dataset(market, target=target, progress=out.is_terminal)


def _more(dataset: str) -> str:
    """What gives a click dataset more test examples."""
    kind = dataset.partition(":")[0]
    return {"store": "log more served ads", "sim": "simulate more impressions"}.get(kind, "read a larger log")


def _evaluate_ctr(dataset: str, names: list[str], json_path: Path | None, task: str, seed: int) -> None:
    from adrec.evaluation.ctr import REPORT_ROWS, compare_click_models, report_cells
    from adrec.models.ctr import registered_click_models

    unknown = [m for m in names if m not in registered_click_models()]
    if unknown:
        raise ValidationError("--models", f"unknown {unknown}; click models: {', '.join(registered_click_models())}")
    data = _click_dataset(dataset, task, seed)
    out.print(data.describe(), highlight=False)
    positives = int(data.test.labels.sum())
    if positives < 500:
        out.print(
            f"[yellow]only {positives} positive test examples: differences between models are mostly noise; "
            f"{_more(dataset)}[/]",
            highlight=False,
        )
    report = compare_click_models(
        data,
        names,
        progress=out.is_terminal,
        on_result=lambda name, r: out.print(f"  {name}: fitted in {r['fit_seconds']:.1f} s", highlight=False),
    )
    columns = {**report["models"], **report["baselines"], "base rate": report["base"]}
    if "oracle" in report:
        columns["oracle"] = report["oracle"]
    what = "Click" if task == "ctr" else "Conversion"
    table = Table(title=f"{what} models on the test examples ({report['examples']['test']:,})")
    table.add_column("metric")
    for name in columns:
        table.add_column(name, justify="right")
    for label, key, fmt in REPORT_ROWS:
        table.add_row(label, *report_cells(columns, key, fmt))
    out.print(table)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=2, default=float))
        out.print(f"report: {json_path}", highlight=False)


@app.command(
    epilog=(
        "Examples:  \n`adrec train -d store:sqlite:///adrec-demo/adrec.db --model gfcf --out models/gfcf`  \n"
        "`adrec train -d lightgcn:../shared/data/gowalla_lightgcn --model lightgcn --set epochs=50 --out m/lgcn`  \n"
        "`adrec train --task ctr -d sim:users=2000,ads=300,impressions=200000 --model lr --out models/bpr/ctr`"
    )
)
@friendly
def train(
    dataset: DatasetOption,
    model: Annotated[str, typer.Option("--model", help="Registered model name.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write the trained model to.")],
    params: SetOption = None,
    all_data: Annotated[
        bool, typer.Option("--all", help="Train on train and test together (for serving, not for evaluation).")
    ] = False,
    seed: Annotated[int | None, typer.Option(help="Seed for splits that need one.")] = None,
    calibrate: Annotated[
        bool | None,
        typer.Option(
            help="For a store: dataset, fit the pCTR calibrator serving uses on held-out later impressions (a copy of "
            "the model trained on the earlier clicks scores them; doubles training time). Without it, or when too "
            "few clicks are held out, serving fits one when it loads the model, on logged impressions of pairs "
            "outside the training data. Default: on (ranking models only)."
        ),
    ] = None,
    task: TaskOption = "ranking",
) -> None:
    """Train a model on a dataset and save it (without pickle) for `adrec recommend` and serving.

    With `--task ctr` (or `cvr`), a click (or conversion) model, fitted on the dataset's train examples, stopped
    early and calibrated on its validation examples. Saved as `MODEL_FOLDER/ctr` (or `/cvr`) of a served model
    folder, serving ranks with it (see the README's Serving section).
    """
    import time

    from adrec.data.interactions import Interactions
    from adrec.evaluation.runner import make_model
    from adrec.models.artifact import Artifact
    from adrec.store.datasets import load_dataset

    options = parse_params(params)
    if task in ("ctr", "cvr"):
        if all_data:
            raise ValidationError("--all", "applies to --task ranking; a click model keeps its validation examples")
        if calibrate is not None:
            raise ValidationError(
                "--calibrate", "applies to --task ranking; a click model calibrates on its validation examples"
            )
        _train_ctr(dataset, model, options, out_dir, task, settings(seed=seed).seed)
        return
    if task != "ranking":
        raise ValidationError("--task", f"must be ranking, ctr or cvr (got {task!r})")
    estimator = make_model(model, **options)  # cheap checks before the expensive load
    cfg = settings(seed=seed)
    data = load_dataset(dataset, seed=cfg.seed)
    train_set = data.train
    if all_data:
        train_set = Interactions(data.train.matrix + data.test.matrix, data.train.users, data.train.items)
        train_set.matrix.data[:] = 1.0
    t0 = time.perf_counter()
    estimator.fit(train_set)
    seconds = time.perf_counter() - t0
    artifact = Artifact.create(estimator, train_set, titles=data.item_titles, dataset=data.name)
    kind, _, location = dataset.partition(":")
    if calibrate is not False and kind == "store":
        from adrec.serving.calibration import held_out_calibration
        from adrec.store import open_store

        t0 = time.perf_counter()
        with open_store(location, create=False) as store:
            artifact.calibration = held_out_calibration(lambda early: make_model(model, **options).fit(early), store)
        fitted = artifact.calibration
        how = f"on {fitted['n']:,} held-out impressions" if fitted else "not fitted (too few held-out clicks)"
        out.print(f"calibration {how} ({time.perf_counter() - t0:.1f} s)", highlight=False)
    from adrec.serving.pipeline import CLICK_MODEL_DIR, CONVERSION_MODEL_DIR

    kept = [d for d in (CLICK_MODEL_DIR, CONVERSION_MODEL_DIR) if (out_dir / d).is_dir()]
    path = artifact.save(out_dir, keep=kept)
    out.print(f"trained {estimator!r} on {train_set.nnz:,} interactions in {seconds:.1f} s → {path}", highlight=False)
    if kept:
        out.print(f"kept the click models trained into it earlier: {', '.join(d + '/' for d in kept)}", highlight=False)


train.__doc__ = f"{train.__doc__}\n\nRegistered models: {_model_names()}"


def _train_ctr(dataset: str, name: str, options: dict[str, Any], out_dir: Path, task: str, seed: int) -> None:
    import time

    from adrec.evaluation.ctr import click_metrics
    from adrec.models.ctr import get_click_model

    model = get_click_model(name, **options)  # cheap checks before the expensive load
    data = _click_dataset(dataset, task, seed)
    out.print(data.describe(), highlight=False)
    t0 = time.perf_counter()
    model.fit(data.train, data.valid, spec=data.spec, progress=out.is_terminal)
    seconds = time.perf_counter() - t0
    test = click_metrics(data.test.labels, model.predict(data.test))
    path = model.save(out_dir)
    out.print(
        f"trained {model!r} on {len(data.train):,} examples in {seconds:.1f} s (test AUC {test['auc']:.4f}, "
        f"logloss {test['logloss']:.5f}, PCOC {test['pcoc']:.3f}) → {path}",
        highlight=False,
    )


@app.command(
    epilog="Example:  \n`adrec recommend --model-dir models/gfcf --user sim0-u000042 --k 10` (raw model scores)"
)
@friendly
def recommend(
    model_dir: Annotated[Path, typer.Option("--model-dir", help="A folder written by `adrec train`.")],
    user: Annotated[str, typer.Option("--user", help="External user id.")],
    k: Annotated[int, typer.Option("--k", min=1, help="How many ads.")] = 10,
    as_json: JsonOption = False,
) -> None:
    """A trained model's raw top items for a user, with its scores, excluding items the user already interacted with.

    This is the model alone: no targeting, budgets, frequency caps, eCPM or auction. The ads a user is actually
    served come from the decision pipeline: `GET /v1/recommendations` of `adrec serve` (or the demo's step 7).
    """
    from adrec.models.artifact import Artifact

    recs = Artifact.load(model_dir).recommend(user, k)
    if as_json:
        out.print_json(json.dumps([r.__dict__ for r in recs]))
        return
    table = Table(title=f"Top {k} for {user}")
    table.add_column("#", justify="right")
    table.add_column("ad")
    table.add_column("title")
    table.add_column("score", justify="right")
    for rank, r in enumerate(recs, start=1):
        table.add_row(str(rank), r.item_id, r.title, f"{r.score:.4f}")
    out.print(table)
