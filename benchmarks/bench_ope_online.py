"""Off-policy estimates against the live A/B test (issue #14): does what ``adrec ope --db URL --policy-model DIR``
estimates from an exploring arm's logs agree with what the candidate then earns live?

``python -m benchmarks.bench_ope_online --config config/experiment.ope.toml`` (``--name`` to write elsewhere;
``--render`` writes the Markdown and the plot again from the committed JSON, without running anything):

1. The market's warm-up history is simulated into a store of its own and every model an arm names as
   ``model_dir = "{models}/NAME"`` is trained on it and saved there (``NAME``: a table ``[models.NAME]`` with the
   registered ``model`` and its ``params``, or a registered model with its defaults).
2. The experiment runs live: the ``logger`` arm explores (its propensities logged with every impression) and the
   candidate arms serve their saved models, each with its own serving settings, on their own users and budget
   shares.
3. Each arm, the logger's own included (a check: on its own logs every weight is 1), is estimated offline from the
   logger's store alone (:func:`adrec.serving.replay.evaluate_logged`), and every estimate is compared with the
   arm's live result: inside the live 95 % interval or not, and the relative difference.

Writes ``results/NAME.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from adrec.experiment import ArmConfig, ExperimentConfig, run_experiment
from adrec.experiment.live import train_arm
from adrec.serving.replay import METRICS, evaluate_logged
from adrec.simulate.config import SimulationConfig
from adrec.simulate.runner import simulate
from adrec.store import open_store
from benchmarks.common import RESULTS, peak_rss_mib, write_results

ROOT = Path(__file__).resolve().parents[1]
LOGGER = "logger"
PRIMARY = ("snipw", "sndr", "dr")
"""The estimators the verdict is about (chosen before the run); the JSON holds all."""
_PLACEHOLDER = re.compile(r"^\{models\}/([A-Za-z0-9_-]+)$")


def _train_models(raw: dict[str, Any], folder: Path) -> dict[str, float]:
    """Train every ``{models}/NAME`` an arm names on the warm-up history (``NAME`` a table of ``[models]`` with its
    ``model`` and ``params``, else a registered model with its defaults); returns seconds per model."""
    specs = raw.pop("models", {})
    names = sorted({m.group(1) for a in raw["arms"] if (m := _PLACEHOLDER.match(str(a.get("model_dir", ""))))})
    seconds: dict[str, float] = {}
    with open_store(f"sqlite:///{folder / 'warmup.db'}") as store:
        simulate(SimulationConfig(**raw.get("market", {})), [store], progress=False)
        for name in names:
            t0 = time.perf_counter()
            spec = specs.get(name, {"model": name})
            arm = ArmConfig(name=name, model=spec["model"], params=spec.get("params", {}))
            artifact = train_arm(arm, store)
            if artifact is None:
                raise SystemExit(f"the warm-up history has no click to train {name} on")
            artifact.save(folder / name)
            seconds[name] = time.perf_counter() - t0
    for arm in raw["arms"]:
        if "model_dir" in arm:
            arm["model_dir"] = str(arm["model_dir"]).replace("{models}", str(folder))
    return seconds


def _inside(value: float, live: dict[str, float]) -> bool:
    return live["ci_low"] <= value <= live["ci_high"]


def _z(offline: dict[str, float], live: dict[str, float]) -> float:
    """The offline-minus-live difference in standard errors of the difference (each side's from its 95 % CI)."""
    se_off = (offline["ci_high"] - offline["ci_low"]) / (2 * 1.96)
    se = math.hypot(se_off, live["se"])
    return (offline["estimate"] - live["mean"]) / se if se > 0 else math.nan


def _summary(arms: list[dict[str, Any]]) -> dict[str, Any]:
    """How often the primary estimates fall inside the live 95 % CI, and how often their difference from the live
    result is within 1.96 standard errors of the difference (both sides' uncertainty), over all arms and over the
    candidates whose logged support covers them (mean weight >= 0.95)."""
    out: dict[str, Any] = {}
    for scope, keep in (
        ("all", lambda a: True),
        ("supported", lambda a: a["offline"]["overlap"]["mean_weight"] >= 0.95),
    ):
        checks = inside = agree = 0
        diffs = []
        for arm in (a for a in arms if keep(a)):
            for metric in METRICS:
                live = arm["live"][metric]
                for est in PRIMARY:
                    e = arm["offline"]["estimates"][metric][est]
                    checks += 1
                    inside += _inside(e["estimate"], live)
                    agree += abs(_z(e, live)) <= 1.96
                    diffs.append(abs(e["estimate"] / live["mean"] - 1) if live["mean"] else math.nan)
        out[scope] = {
            "checks": checks,
            "inside_live_ci": inside,
            "difference_within_1.96_se": agree,
            "mean_abs_rel_diff": float(sum(diffs) / len(diffs)) if diffs else math.nan,
        }
    return out


def _markdown(payload: dict[str, Any]) -> str:
    rows = [
        f"Logged: {payload['logged_requests']:,} requests of the `{LOGGER}` arm "
        f"({payload['logged_rows']:,} impressions with their propensities). Every arm estimated from those logs "
        "alone (the logger's own: a check), then run live on its own users. Cells: estimate (95 % bootstrap CI over "
        "users); ✓ = inside the live 95 % CI; z = (offline − live) / standard error of the difference. Mean "
        "weight: E[π/μ] over the logged slots, the share of the candidate's slots the logger could have shown "
        "(below 1: part of what the candidate does was never logged, and the estimate cannot see it).",
        "",
    ]
    for metric in METRICS:
        rows += [
            f"### {metric}",
            "",
            "| arm | live (95 % CI) | " + " | ".join(PRIMARY) + " | mean weight | ESS |",
            "|---|---|" + "---|" * len(PRIMARY) + "---:|---:|",
        ]
        for arm in payload["arms"]:
            live = arm["live"][metric]
            cells = [arm["name"], f"{live['mean']:.4f} [{live['ci_low']:.4f}, {live['ci_high']:.4f}]"]
            for est in PRIMARY:
                e = arm["offline"]["estimates"][metric][est]
                mark = "✓" if _inside(e["estimate"], live) else "✗"
                cells.append(f"{e['estimate']:.4f} [{e['ci_low']:.4f}, {e['ci_high']:.4f}] {mark} z={_z(e, live):+.1f}")
            o = arm["offline"]["overlap"]
            cells += [f"{o['mean_weight']:.3f}", f"{o['effective_sample_size']:,.0f}"]
            rows.append("| " + " | ".join(cells) + " |")
        rows.append("")
    for scope, s in payload["summary"].items():
        rows.append(
            f"- {scope} arms: inside the live 95 % CI {s['inside_live_ci']} of {s['checks']} "
            f"(arm × metric × {', '.join(PRIMARY)}); difference within 1.96 SE {s['difference_within_1.96_se']} of "
            f"{s['checks']}; mean |relative difference| {s['mean_abs_rel_diff'] * 100:.1f} %."
        )
    rows += [
        "",
        f"Wall time: warm-up and training {payload['seconds']['models']:.0f} s, live run "
        f"{payload['seconds']['experiment']:.0f} s, offline estimates {payload['seconds']['offline']:.0f} s; peak "
        f"RSS {payload['peak_rss_mib']:.0f} MiB.",
    ]
    return "\n".join(rows)


def _plot(payload: dict[str, Any], path: Path) -> None:
    fig, axes = plt.subplots(1, len(METRICS), figsize=(5 * len(METRICS), 4))
    for ax, metric in zip(axes, METRICS, strict=True):
        names = [a["name"] for a in payload["arms"]]
        for i, arm in enumerate(payload["arms"]):
            live = arm["live"][metric]
            ax.errorbar(
                i - 0.15,
                live["mean"],
                yerr=[[live["mean"] - live["ci_low"]], [live["ci_high"] - live["mean"]]],
                fmt="o",
                color="black",
                label="live A/B" if i == 0 else None,
            )
            for j, est in enumerate(PRIMARY):
                e = arm["offline"]["estimates"][metric][est]
                ax.errorbar(
                    i + 0.05 + 0.1 * j,
                    e["estimate"],
                    yerr=[[e["estimate"] - e["ci_low"]], [e["ci_high"] - e["estimate"]]],
                    fmt="s",
                    color=f"C{j}",
                    label=f"offline {est}" if i == 0 else None,
                )
        ax.set_xticks(range(len(names)), names, rotation=20, ha="right")
        ax.set_title(metric)
    axes[0].legend(fontsize=8)
    fig.suptitle("Offline estimates from the logger's logs vs the live result (95 % CIs)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "config" / "experiment.ope.toml")
    parser.add_argument("--name", default="ope-online")
    parser.add_argument("--runs", type=int, default=100, help="Monte Carlo selections per replayed request")
    parser.add_argument("--bootstrap", type=int, default=500)
    parser.add_argument("--render", action="store_true", help="write the Markdown and the plot again from the JSON")
    args = parser.parse_args()
    if args.render:
        record = json.loads((RESULTS / f"{args.name}.json").read_text())
        record["summary"] = _summary(record["arms"])
        (RESULTS / f"{args.name}.json").write_text(json.dumps(record, indent=2) + "\n")
        md = (RESULTS / f"{args.name}.md").read_text()
        head = md[: md.index("Logged:")]
        (RESULTS / f"{args.name}.md").write_text(head + _markdown(record) + "\n")
        _plot(record, RESULTS / f"{args.name}.png")
        return
    raw = tomllib.loads(args.config.read_text())
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="adrec-ope-online-") as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        trained = _train_models(raw, folder / "models")
        seconds["models"] = time.perf_counter() - t0
        config = ExperimentConfig(**raw)
        if LOGGER not in {a.name for a in config.arms}:
            raise SystemExit(f"the experiment needs an arm named {LOGGER!r} that explores")
        with open_store(f"sqlite:///{folder / 'logger.db'}") as store:
            t0 = time.perf_counter()
            report = run_experiment(config, {LOGGER: store})
            seconds["experiment"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            arms: list[dict[str, Any]] = []
            for arm, result in zip(config.arms, report.arms, strict=True):
                assert arm.model_dir is not None, "every arm of this benchmark serves a saved model"
                offline = evaluate_logged(
                    store,
                    arm.model_dir,
                    arm.pipeline_config(config.feedback_every_s),
                    since=config.live_start,
                    runs=args.runs,
                    n_bootstrap=args.bootstrap,
                    describe={"arm": arm.name, "serving": arm.serving},
                )
                live = {m: result.metrics[m].as_dict() for m in METRICS}
                arms.append({"name": arm.name, "serving": arm.serving, "live": live, "offline": offline})
                print(arm.name, json.dumps({m: offline["estimates"][m]["sndr"] for m in METRICS}), live)
            seconds["offline"] = time.perf_counter() - t0
    logger = next(a for a in arms if a["name"] == LOGGER)
    payload = {
        "config": str(args.config.relative_to(ROOT) if args.config.is_relative_to(ROOT) else args.config),
        "primary_estimators": list(PRIMARY),
        "trained_seconds": trained,
        "logged_requests": logger["offline"]["requests"],
        "logged_rows": logger["offline"]["rows"],
        "arms": arms,
        "summary": _summary(arms),
        "seconds": seconds,
        "peak_rss_mib": peak_rss_mib(),
    }
    write_results(args.name, payload, _markdown(payload), packages=("numpy", "scipy", "torch"))
    _plot(payload, RESULTS / f"{args.name}.png")
    print(_markdown(payload))


if __name__ == "__main__":
    main()
