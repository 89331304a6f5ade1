"""Market commands: ``simulate``, ``import``, ``stats`` and ``demo``."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from adrec.cli.app import DbOption, JsonOption, ProgressOption, app, friendly, out, settings

if TYPE_CHECKING:
    from adrec.data.datasets import Dataset
    from adrec.models.base import Recommender
    from adrec.simulate import Market


# ------------------------------------------------------------------------------------------------ stats
def print_stats(db_url: str, *, as_json: bool = False) -> None:
    from adrec.store import open_store

    with open_store(db_url, create=False) as store:
        stats = store.stats()
    if as_json:
        out.print_json(json.dumps({**asdict(stats), "ctr": stats.ctr}))
        return
    table = Table(title=f"Store {db_url}", show_header=False)
    for name, value in [
        ("users", stats.users),
        ("advertisers", stats.advertisers),
        ("campaigns", stats.campaigns),
        ("ads", stats.ads),
        *[(f"{k}s", v) for k, v in stats.events.items()],
        ("CTR (clicks / impressions)", f"{stats.ctr:.2%}"),
        ("spend (charged)", f"{stats.spend:,.2f}"),
        ("unbilled delivery (over budget, absorbed)", f"{stats.unbilled:,.2f}"),
        ("CTR-log examples", stats.ctr_examples),
    ]:
        table.add_row(name, f"{value:,}" if isinstance(value, int) else str(value))
    out.print(table)
    if stats.top_categories:
        cats = Table(title="Top categories by impressions")
        cats.add_column("category")
        cats.add_column("impressions", justify="right")
        cats.add_column("clicks", justify="right")
        cats.add_column("CTR", justify="right")
        for cat, imps, clicks in stats.top_categories:
            cats.add_row(cat, f"{imps:,}", f"{clicks:,}", f"{clicks / imps:.2%}" if imps else "—")
        out.print(cats)


@app.command(epilog="Examples:  \n`adrec stats --db sqlite:///adrec-demo/adrec.db`  \n`adrec stats --json`")
@friendly
def stats(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Counts, CTR, spend and the top categories of a store."""
    print_stats(settings(db_url=db).db_url, as_json=as_json)


# ------------------------------------------------------------------------------------------------ import
def _formats_help() -> str:
    from adrec.data.importers import IMPORTERS

    return "  \n".join(f"`{name}`: {imp.description}" for name, imp in IMPORTERS.items())


@app.command(
    "import",
    epilog=(
        "Examples:  \n`adrec import movielens ../shared/data/ml-100k --db sqlite:///ml.db`  \n"
        "`adrec import lightgcn ../shared/data/gowalla_lightgcn`  \n"
        "`adrec import criteo ../shared/data/criteo_sample_deepctr/criteo_sample.txt --skip-bad`"
    ),
)
@friendly
def import_(
    format: Annotated[str, typer.Argument(help="Dataset format; see the list above.", metavar="FORMAT")],
    path: Annotated[Path, typer.Argument(help="Dataset folder or file.")],
    db: DbOption = None,
    skip_bad: Annotated[
        bool, typer.Option("--skip-bad", help="Import the good rows and report the bad ones (default: stop).")
    ] = False,
    progress: ProgressOption = True,
    as_json: JsonOption = False,
) -> None:
    """Import a real dataset into the store, validating every row.

    A malformed row stops the import of its file with `file:line: field: problem`, and nothing of that file is
    written; `--skip-bad` imports the rest and reports counts.
    """
    from adrec.data.importers import run_import
    from adrec.store import open_store

    cfg = settings(db_url=db)
    with open_store(cfg.db_url) as store:
        report = run_import(format, path, store, skip_bad=skip_bad, progress=progress and cfg.progress)
    if as_json:
        out.print_json(json.dumps(asdict(report), default=str))
        return
    out.print(report.summary(), highlight=False)


import_.__doc__ = f"{import_.__doc__}\n\nFormats:  \n{_formats_help()}"


# ------------------------------------------------------------------------------------------------ simulate
def run_simulation(db_url: str, config: Any, *, truth_dir: Path | None, progress: bool) -> Any:
    from adrec.simulate import simulate
    from adrec.store import open_store

    with open_store(db_url) as store:
        report = simulate(config, store, out_dir=truth_dir, progress=progress)
    table = Table(title="Simulated market", show_header=False)
    for name, value in [
        ("seed", report.seed),
        (
            "users / advertisers / campaigns / ads",
            f"{report.users:,} / {report.advertisers:,} / {report.campaigns:,} / {report.ads:,}",
        ),
        (
            "impressions / clicks / conversions",
            f"{report.impressions:,} / {report.clicks:,} / {report.conversions:,}",
        ),
        ("events newly stored", f"{report.inserted:,}"),
        ("realised CTR (true mean pCTR)", f"{report.ctr:.2%} ({report.mean_true_ctr:.2%})"),
        ("conversions per click", f"{report.cvr:.2%}"),
        ("spend (charged within budgets)", f"{report.spend:,.2f}"),
        ("unbilled delivery (over budget, absorbed)", f"{report.unbilled:,.2f}"),
        ("campaigns out of budget", f"{report.campaigns_exhausted:,}"),
        ("ground truth saved to", str(report.out_dir) if report.out_dir else "—"),
        ("wall time", f"{report.seconds:.1f} s"),
    ]:
        table.add_row(name, str(value))
    out.print(table)
    return report


@app.command(
    epilog=(
        "Examples:  \n`adrec simulate --db sqlite:///market.db --truth market-truth`  \n"
        "`adrec simulate --users 1000000 --ads 100000 --impressions 10000000 --seed 7`"
    )
)
@friendly
def simulate(
    db: DbOption = None,
    users: Annotated[int, typer.Option(help="Number of users.")] = 5_000,
    advertisers: Annotated[int, typer.Option(help="Number of advertisers.")] = 50,
    campaigns: Annotated[int, typer.Option(help="Number of campaigns (>= advertisers).")] = 150,
    ads: Annotated[int, typer.Option(help="Number of ads (>= campaigns).")] = 500,
    impressions: Annotated[
        int, typer.Option(help="Impressions to log (clicks and conversions come on top).")
    ] = 200_000,
    days: Annotated[int, typer.Option(help="Days of history.")] = 14,
    seed: Annotated[int | None, typer.Option(help="Random seed (default: the `seed` setting).")] = None,
    truth: Annotated[
        Path | None, typer.Option(help="Folder to save the ground truth (click model, latent interests) in.")
    ] = None,
    progress: ProgressOption = True,
) -> None:
    """Simulate a seeded ad market (users, advertisers, campaigns, ads, impressions, clicks, conversions).

    The same seed and sizes give the same data; re-running adds no duplicate events.
    """
    from adrec.simulate import SimulationConfig

    cfg = settings(db_url=db, seed=seed)
    config = SimulationConfig(
        seed=cfg.seed,
        n_users=users,
        n_advertisers=advertisers,
        n_campaigns=campaigns,
        n_ads=ads,
        n_impressions=impressions,
        days=days,
    )
    run_simulation(cfg.db_url, config, truth_dir=truth, progress=progress and cfg.progress)


# ------------------------------------------------------------------------------------------------ demo
@app.command(epilog="Example:  \n`adrec demo --dir adrec-demo`")
@friendly
def demo(
    directory: Annotated[
        Path | None, typer.Option("--dir", help="Where to write the demo database and ground truth.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    progress: ProgressOption = True,
) -> None:
    """The end-to-end demo on embedded defaults, no external data needed.

    Simulates a seeded ad market into `DIR/adrec.db`, shows what the store holds, chooses a recommender on a
    validation split, evaluates every candidate on the held-out (latest) clicks, and shows the top ads for a few
    users next to the simulator's *true* click probabilities; then builds user profiles and shows one, recommends
    an ad before its first click from its creative text, and expands a lookalike audience. The database is
    recreated on every run.
    """
    from adrec import demo as lib
    from adrec.simulate import Market
    from adrec.store.datasets import load_dataset

    cfg = settings(seed=seed)
    root = directory or cfg.demo_dir
    root.mkdir(parents=True, exist_ok=True)
    db_path = root / "adrec.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    db_url = f"sqlite:///{db_path}"
    show = progress and cfg.progress
    out.rule("[bold]adrec demo[/] 1/8: a simulated ad market")
    run_simulation(db_url, lib.demo_config(cfg.seed), truth_dir=root / "truth", progress=show)
    print_stats(db_url)

    out.rule("[bold]adrec demo[/] 2/8: which ads for which user — models compared on held-out clicks")
    data = load_dataset(f"store:{db_url}", seed=cfg.seed)
    out.print(
        f"{data.train.n_users:,} users with clicks, {data.train.n_items:,} ads; test = each user's latest 20 % "
        f"of clicks ({data.test.nnz:,}); the model is chosen on a validation split carved from train.",
        highlight=False,
    )
    quiet = {} if show else {"bpr": {"verbose": False}, "lightgcn": {"verbose": False}}
    best, _, test_report = lib.select_model(data, seed=cfg.seed, params=quiet)
    header, rows = test_report.table()
    table = Table(title=f"Full-ranking evaluation on held-out clicks (chosen on validation: {best})")
    table.add_column("metric")
    for row in rows:
        table.add_column(f"{row[0]} *" if row[0] == best else row[0], justify="right")
    for i, name in enumerate(header[1:], start=1):
        table.add_row(name, *[row[i] for row in rows])
    out.print(table)

    out.rule(f"[bold]adrec demo[/] 3/8: top ads from {best}, checked against the simulator's truth")
    model = lib.fit_best(best, data.train, quiet)
    market = Market.load(root / "truth")
    users = [data.train.users.ids[i] for i in (0, len(data.train.users) // 2, len(data.train.users) - 1)]
    for check in lib.truth_check(model, data.train, market, data.item_titles, users):
        t = Table(title=f"user {check.user_id}", show_header=True)
        t.add_column("#", justify="right")
        t.add_column("ad")
        t.add_column("creative")
        for rank, (ad, title) in enumerate(zip(check.ads, check.titles, strict=True), start=1):
            t.add_row(str(rank), ad, title)
        out.print(t)
        out.print(
            f"  true CTR of these ads {check.true_ctr_recommended:.2%} vs {check.true_ctr_catalogue:.2%} for an "
            f"average ad ({check.true_ctr_recommended / check.true_ctr_catalogue:.1f}x)",
            highlight=False,
        )
    rec_ctr, all_ctr = lib.truth_lift(model, data.train, market, seed=cfg.seed)
    pop_ctr, _ = lib.truth_lift(lib.fit_best("popularity", data.train), data.train, market, seed=cfg.seed)
    out.print(
        f"\n[bold]Over all users[/]: the top-5 unseen ads from {best} have a true CTR of {rec_ctr:.2%}, against "
        f"{all_ctr:.2%} for an average ad ({rec_ctr / all_ctr:.1f}x) and {pop_ctr:.2%} for the most popular ads.",
        highlight=False,
    )
    _demo_profiles_and_cold_start(db_url, data, model, market, best)
    _demo_serving(db_url, root, data, model, best)
    _demo_experiment(cfg.seed, best, quiet.get(best, {}), show)
    out.print(
        f"\nDone. Store: {db_url} · ground truth: {root / 'truth'}\nNext: `adrec stats --db {db_url}` · "
        f"`adrec evaluate -d store:{db_url} -m popularity,ease,lightgcn` · `adrec --help`",
        highlight=False,
    )


def _demo_experiment(seed: int, best: str, params: dict[str, Any], progress: bool) -> None:
    """Step 8 of the demo: a short live experiment on a small market of its own (in memory)."""
    from adrec.cli.experiment import show
    from adrec.experiment import ArmConfig, ExperimentConfig, run_experiment
    from adrec.simulate import SimulationConfig

    out.rule("[bold]adrec demo[/] 8/8: the closed loop — arms served live on a simulated clock, compared with CIs")
    config = ExperimentConfig(
        market=SimulationConfig(
            seed=seed, n_users=3000, n_advertisers=15, n_campaigns=45, n_ads=200, n_impressions=40_000, days=7
        ),
        days=1,
        requests_per_day=4000,
        arms=[
            ArmConfig(name="random", policy="random"),
            ArmConfig(name="no-model", policy="no-model"),
            ArmConfig(name=best, model=best, params=params, retrain_hours=6),
            ArmConfig(name="oracle", policy="oracle"),
        ],
        seed=seed,
    )
    out.print(
        "A fresh market (3,000 users, 200 ads, a week of logged history), then one live day of 4,000 requests: "
        "each user always in the same arm, each arm with its share of every budget, every request through the "
        f"serving pipeline, clicks drawn from the true click model, feedback through the ledger; {best} retrains "
        "every 6 simulated hours.",
        highlight=False,
    )
    report = run_experiment(config, progress=progress)
    show(report.as_dict())
    out.print("Your own: `adrec experiment run --config config/experiment.example.toml --json out.json`.")


def _demo_serving(db_url: str, root: Path, data: Dataset, model: Recommender, best: str) -> None:
    """Step 7 of the demo: the model saved for serving, one ad decision in process, and the HTTP API's curls."""
    import shutil

    from adrec.cli.serve import token_secret
    from adrec.feedback.tokens import TokenSigner
    from adrec.models.artifact import Artifact
    from adrec.serving.auth import create_api_key
    from adrec.serving.pipeline import Pipeline, ServingModel
    from adrec.store import open_store

    out.rule("[bold]adrec demo[/] 7/8: serving — targeting, eCPM ranking, GSP prices, the HTTP API")
    models = root / "models"
    shutil.rmtree(models, ignore_errors=True)
    Artifact.create(model, data.train, titles=data.item_titles, dataset=data.name).save(models / best)
    # A fresh models folder: its new secret is the one `make serve` (adrec serve --models MODELS) then reads.
    secret = token_secret(models, settings().token_secret, create=True)
    with open_store(db_url) as store:
        serving_model = ServingModel.load(models, store)
        pipeline = Pipeline(store, serving_model, TokenSigner(secret))
        user = data.train.users.ids[0]
        response = pipeline.recommend(user, 5, placement="home")
        _, key = create_api_key(store, "serving", name="demo")
        _, admin = create_api_key(store, "admin", name="demo")
    cal = serving_model.calibrator
    held = "held-out" if cal.held_out else "in-sample"
    table = Table(title=f"Ads served to {user} (model {best}; pCTR calibrated on {cal.n:,} {held} impressions)")
    for column in ("#", "ad", "category", "pricing", "bid", "pCTR", "eCPM", "price", "source"):
        table.add_column(column, justify="right" if column in ("#", "bid", "pCTR", "eCPM", "price") else "left")
    for ad in response.ads:
        table.add_row(
            str(ad.rank),
            ad.ad_id,
            ad.category or "",
            ad.pricing_model,
            f"{ad.bid:.2f}",
            f"{ad.pctr:.2%}",
            f"{ad.ecpm:.2f}",
            f"{ad.price:.4f}",
            ad.source,
        )
    out.print(table)
    if response.ads:
        top = response.ads[0]
        out.print(f"Why {top.ad_id}: {'; '.join(top.rules)}.", highlight=False)
    out.print(
        f"{response.eligible} of {pipeline.catalog.n_ads} ads were eligible (status, schedule, budget and pacing, "
        f"targeting, frequency caps); each served ad carries a signed impression token for `POST /v1/events`.",
        highlight=False,
    )
    (root / "api-keys.txt").write_text(f"serving {key}\nadmin {admin}\n")
    base = "http://127.0.0.1:8000"
    out.print(
        f"\nStart the API with `make serve` (= `adrec serve --db {db_url} --models {models}`), then:\n"
        f"  curl -H 'X-API-Key: {key}' '{base}/v1/recommendations?user_id={user}&k=3'\n"
        f"  curl -X POST -H 'X-API-Key: {key}' -H 'Content-Type: application/json' {base}/v1/events \\\n"
        f'       -d \'{{"events": [{{"event_id": "e1", "type": "impression", "token": "TOKEN"}}]}}\'\n'
        f"  curl -H 'X-API-Key: {admin}' '{base}/v1/reports/campaigns'\n"
        f"  open {base}/docs for the OpenAPI documentation. Keys are in {root / 'api-keys.txt'}.",
        highlight=False,
    )


def _demo_profiles_and_cold_start(db_url: str, data: Dataset, model: Recommender, market: Market, best: str) -> None:
    """Steps 4-6 of the demo: a user profile, a new ad before its first click, a lookalike audience."""
    import time

    import numpy as np

    from adrec import demo as lib
    from adrec.catalog import ad_text
    from adrec.cli.profiles import explain
    from adrec.profiles import ProfileBuilder
    from adrec.store import open_store

    out.rule("[bold]adrec demo[/] 4/8: a user profile, built from the events")
    started = time.perf_counter()
    with open_store(db_url) as store:
        busiest = data.train.users.ids[int(np.diff(data.train.matrix.indptr).argmax())]
        # One user is enough to show; `adrec build-profiles` builds them all (incrementally afterwards).
        report = ProfileBuilder().rebuild(store, [busiest])
        profile = store.get_profile(busiest)
        ads = {a.ad_id: a for a in store.get_ads(data.train.items.ids)}
    u = profile.user
    out.print(
        f"Profile built from {report.used:,} events in {time.perf_counter() - started:.1f} s "
        f"(`adrec build-profiles --db {db_url}` builds every user's). "
        f"User {busiest}: {u.age or '?'} years, {u.gender.value}, {u.city or u.region or '?'}, {u.device.value}"
        + (
            f"; {profile.behaviour.clicks} clicks, smoothed CTR {profile.behaviour.ctr:.2%}"
            if profile.behaviour
            else ""
        ),
        highlight=False,
    )
    for line in explain(profile, 3):
        out.print(f"  {line}", highlight=False)

    out.rule("[bold]adrec demo[/] 5/8: a new ad, recommended before its first click")
    texts = [ad_text(ads[i]) if i in ads else "" for i in data.train.items.ids]
    cold = lib.cold_ad_check(data.train, market, texts, data.item_titles)
    out.print(
        f"Ad {cold.ad_id} \u201c{cold.title}\u201d with its {cold.clicks_hidden} clicks hidden, so it is new to the "
        f"model; placed by its text ({cold.encoder}) next to: {'; '.join(cold.neighbours)}.",
        highlight=False,
    )
    shown = f"already in the top 5 for {cold.recommended_to:,} user(s)" + (
        f" (their true CTR for it: {cold.true_ctr_recommended:.2%})" if cold.recommended_to >= 20 else ""
    )
    out.print(
        f"Before any click it is {shown}; the {cold.audience:,} users it scores highest have a true CTR of "
        f"{cold.true_ctr_audience:.2%} for it, against {cold.true_ctr_all:.2%} over all users "
        f"({cold.true_ctr_audience / cold.true_ctr_all:.1f}x).",
        highlight=False,
    )

    out.rule("[bold]adrec demo[/] 6/8: a lookalike audience")
    assert data.item_categories is not None
    look = lib.lookalike_check(model, data.train, market, data.item_categories, data.category_names)
    out.print(
        f"Seeds: the {look.seeds} heaviest clickers of {look.category}; expanded to {look.size} lookalike users by "
        f"{look.vectors} of {best} (e.g. {', '.join(look.sample[:3])}). Their true CTR on {look.category} ads is "
        f"{look.true_ctr_audience:.2%} against {look.true_ctr_others:.2%} for everyone else "
        f"({look.true_ctr_audience / look.true_ctr_others:.1f}x). Same from the shell: "
        f"`adrec lookalike --seed-file seeds.txt --size {look.size} --db {db_url}`.",
        highlight=False,
    )
