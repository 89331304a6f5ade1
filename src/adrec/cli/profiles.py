"""Profile commands: ``build-profiles``, ``profile`` (explain one user), ``segment`` (resolve an audience) and
``lookalike`` (expand seed users to similar ones)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from adrec.cli.app import DbOption, JsonOption, app, err, friendly, out, parse_time, settings
from adrec.exceptions import ValidationError

if TYPE_CHECKING:
    from adrec.profiles import Profile, Segment, UserVectors
    from adrec.store import Store


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def _parse_age(value: str) -> tuple[int | None, int | None]:
    """``25-34`` → (25, 34); ``25-`` → (25, None); ``-34`` → (None, 34); ``30`` → (30, 30)."""
    lo, sep, hi = value.partition("-")
    try:
        if not sep:
            return int(lo), int(lo)
        return (int(lo) if lo.strip() else None), (int(hi) if hi.strip() else None)
    except ValueError:
        raise ValidationError("--age", f"{value!r} is not an age range like 25-34") from None


# ------------------------------------------------------------------------------------------------ build-profiles
@app.command(
    "build-profiles",
    epilog=(
        "Examples:  \n`adrec build-profiles --db sqlite:///adrec-demo/adrec.db`  \n"
        "`adrec build-profiles --since 2025-01-14 --half-life-days 7`  \n"
        "`adrec build-profiles --models models/bpr` (also store the user embeddings of a model that has them, e.g. "
        "one from `adrec train --model bpr -d store:sqlite:///adrec-demo/adrec.db --out models/bpr`)"
    ),
)
@friendly
def build_profiles(
    db: DbOption = None,
    since: Annotated[
        str | None,
        typer.Option(help="Update incrementally with the events from this time (epoch seconds or ISO date) on."),
    ] = None,
    half_life_days: Annotated[float, typer.Option(help="Half-life of the time decay, in days.")] = 14.0,
    models: Annotated[
        Path | None,
        typer.Option(
            help="Also store each profile's embedding from this model: a model folder, or a folder of models (the "
            "live one, as `adrec serve` picks it). Users the model does not know get none. Needs a full build "
            "(no --since).",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Build every user's profile from the stored events (or update it with the events since a time)."""
    from adrec.profiles import ProfileBuilder
    from adrec.store import open_store

    builder = ProfileBuilder(half_life_days=half_life_days)
    start = time.perf_counter()
    embeddings = None
    if models is not None:
        if since is not None:
            raise ValidationError("--models", "embeddings are written by a full build: leave out --since")
        embeddings = _model_embeddings(models)
    with open_store(settings(db_url=db).db_url, create=False) as store:
        if since is None:
            report = builder.rebuild(store, embeddings=embeddings)
        else:
            report = builder.update_window(store, parse_time(since, "--since"))
    seconds = time.perf_counter() - start
    if as_json:
        out.print_json(json.dumps({**asdict(report), "seconds": seconds}))
        return
    out.print(
        f"{report.profiles:,} profiles written from {report.used:,} of {report.events:,} events in {seconds:.1f} s "
        f"({report.skipped_no_consent:,} events of users without consent and {report.skipped_unknown_users:,} of "
        "unknown users left out)",
        highlight=False,
    )


def _model_embeddings(path: Path) -> dict[str, Any]:
    """User id → user embedding of the model at ``path`` (a model folder or a folder of models: the live one)."""
    from adrec.models.artifact import Artifact
    from adrec.serving.pipeline import find_model_dir

    art = Artifact.load(find_model_dir(path))
    emb = art.model.user_embeddings
    if emb is None:
        raise ValidationError(
            "--models",
            f"the model {art.model.name} in {path} has no user embeddings; use a model that has them (bpr, lightgcn: "
            "`adrec train --model bpr ...`)",
        )
    return dict(zip(art.users.ids, emb, strict=True))


# ------------------------------------------------------------------------------------------------ profile
def _profile_json(profile: Profile, k: int) -> dict[str, Any]:
    b = profile.behaviour
    data: dict[str, Any] = {
        "user": profile.user.model_dump(mode="json"),
        "embedding": None if profile.embedding is None else list(profile.embedding),
        "behaviour": None,
    }
    if b is not None:
        data["behaviour"] = {
            "first_ts": b.first_ts,
            "last_ts": b.last_ts,
            "impressions": b.impressions,
            "clicks": b.clicks,
            "conversions": b.conversions,
            "ctr": b.ctr,
            "decayed": dict(zip(("impressions", "clicks", "conversions"), b.decayed, strict=True)),
            "active_hours": b.active_hours(),
            "top_interests": {
                dim: [{"value": v, "affinity": a, **s._asdict()} for v, a, s in b.top_interests(dim, k)]
                for dim in b.interests
            },
        }
    return data


def explain(profile: Profile, k: int = 5) -> list[str]:
    """Readable lines: each top interest with the events behind it, e.g.
    ``cosmetics 0.62 — 3 clicks, 12 impressions, last 2025-01-12``."""
    b = profile.behaviour
    if b is None:
        return []
    lines = []
    for dimension in b.interests:
        for value, share, s in b.top_interests(dimension, k):
            parts = [f"{s.clicks} clicks", f"{s.impressions} impressions"]
            if s.conversions:
                parts.insert(0, f"{s.conversions} conversions")
            lines.append(f"{dimension:8} {value} {share:.2f} — {', '.join(parts)}, last {_day(s.last_ts)}")
    return lines


@app.command(
    epilog=(
        "Examples:  \n`adrec profile u000042 --db sqlite:///adrec-demo/adrec.db`  \n"
        "`adrec profile u000042 --top 10 --json`"
    )
)
@friendly
def profile(
    user_id: Annotated[str, typer.Argument(help="The user's id.")],
    db: DbOption = None,
    top: Annotated[int, typer.Option("--top", "-k", min=1, help="Interests to show per dimension.")] = 5,
    as_json: JsonOption = False,
) -> None:
    """A user's profile: declared attributes, and their top interests with the events behind them."""
    from adrec.store import open_store

    with open_store(settings(db_url=db).db_url, create=False) as store:
        p = store.get_profile(user_id)
    if as_json:
        out.print_json(json.dumps(_profile_json(p, top)))
        return
    u = p.user
    declared = Table(title=f"Profile of {user_id}", show_header=False)
    for name, value in [
        ("age", u.age),
        ("gender", u.gender.value),
        ("region", u.region),
        ("city", f"{u.city} (tier {u.city_tier})" if u.city else None),
        ("device", u.device.value),
        ("language", u.language),
        ("declared interests", ", ".join(u.interests) or None),
        ("consent", "yes" if u.consent else "no"),
    ]:
        declared.add_row(name, "—" if value is None else str(value))
    b = p.behaviour
    if b is not None:
        declared.add_row("events", f"{b.impressions:,} impressions, {b.clicks:,} clicks, {b.conversions:,} conversions")
        declared.add_row("CTR (smoothed)", f"{b.ctr:.2%}")
        declared.add_row("seen", f"{_day(b.first_ts)} … {_day(b.last_ts)}")
        hours = sorted(range(24), key=lambda h: -b.hours[h])[:3]
        declared.add_row("most active (UTC)", ", ".join(f"{h:02d}h" for h in hours))
    declared.add_row("embedding", "—" if p.embedding is None else f"{len(p.embedding)} dimensions")
    out.print(declared)
    if b is None:
        why = "no consent to behavioural targeting" if not u.consent else "no events yet (run `adrec build-profiles`)"
        out.print(f"No behavioural profile: {why}.", highlight=False)
        return
    out.print("Top interests (affinity share — the events behind it):", highlight=False)
    for line in explain(p, top):
        out.print(f"  {line}", highlight=False)


# ------------------------------------------------------------------------------------------------ segment
GenderOption = Annotated[list[str] | None, typer.Option(help="female, male, other or unknown; repeatable.")]
AgeOption = Annotated[str | None, typer.Option(help="Age range, e.g. 25-34, 50- or -17.")]
CityTierOption = Annotated[list[int] | None, typer.Option(help="City tier 1-6; repeatable.")]
RegionOption = Annotated[list[str] | None, typer.Option(help="Region; repeatable.")]
DeviceOption = Annotated[list[str] | None, typer.Option(help="mobile, desktop, tablet, tv, ...; repeatable.")]
InterestOption = Annotated[
    list[str] | None,
    typer.Option(help="Interest: a category, `brand:NAME` or `price:BAND`; any of them matches; repeatable."),
]
ExcludeInterestOption = Annotated[list[str] | None, typer.Option(help="Leave out users with this interest.")]
MinAffinityOption = Annotated[float, typer.Option(help="Smallest affinity share that counts as an interest.")]
SampleOption = Annotated[int, typer.Option(min=0, help="How many user ids to print.")]


def _segment(
    gender: list[str] | None,
    age: str | None,
    city_tier: list[int] | None,
    region: list[str] | None,
    device: list[str] | None,
    interest: list[str] | None,
    exclude_interest: list[str] | None,
    min_affinity: float,
) -> Segment:
    from adrec.profiles import Segment

    age_min, age_max = _parse_age(age) if age else (None, None)
    return Segment(
        age_min=age_min,
        age_max=age_max,
        genders=frozenset(gender or []),
        city_tiers=frozenset(city_tier or []),
        regions=frozenset(region or []),
        devices=frozenset(device or []),
        interests_include=frozenset(interest or []),
        interests_exclude=frozenset(exclude_interest or []),
        min_affinity=min_affinity,
    )


@app.command(
    epilog=(
        "Examples:  \n`adrec segment --db sqlite:///adrec-demo/adrec.db --gender female --age 25-34 --city-tier 1 "
        "--interest cosmetics`  \n`adrec segment --interest brand:Acme --min-affinity 0.3 --json`"
    )
)
@friendly
def segment(
    db: DbOption = None,
    gender: GenderOption = None,
    age: AgeOption = None,
    city_tier: CityTierOption = None,
    region: RegionOption = None,
    device: DeviceOption = None,
    interest: InterestOption = None,
    exclude_interest: ExcludeInterestOption = None,
    min_affinity: MinAffinityOption = 0.2,
    sample: SampleOption = 10,
    as_json: JsonOption = False,
) -> None:
    """Resolve a rule-defined audience to its users; print the count and a sample."""
    from adrec.profiles import resolve
    from adrec.store import open_store

    seg = _segment(gender, age, city_tier, region, device, interest, exclude_interest, min_affinity)
    with open_store(settings(db_url=db).db_url, create=False) as store:
        start = time.perf_counter()
        users = resolve(store, seg)
        seconds = time.perf_counter() - start
    if as_json:
        out.print_json(json.dumps({"count": len(users), "seconds": seconds, "sample": users[:sample]}))
        return
    out.print(f"{len(users):,} users ({seconds * 1000:.0f} ms)", highlight=False)
    if users and sample:
        more = f" … and {len(users) - sample:,} more" if len(users) > sample else ""
        out.print(", ".join(users[:sample]) + more, highlight=False)


# ------------------------------------------------------------------------------------------------ lookalike
def read_ids(path: Path, option: str = "--seed-file") -> list[tuple[int, str]]:
    """``(line number, id)`` of each user id in a file of one id per line (blank lines and ``#`` comments
    skipped)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValidationError(option, f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ValidationError(option, f"{path} cannot be read as UTF-8 text ({e})") from None
    ids = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        value = line.split("#", 1)[0].strip()
        if not value:
            continue
        if any(c.isspace() for c in value):
            raise ValidationError(option, f"{path}:{line_no}: {value!r} is not one user id (one id per line)")
        ids.append((line_no, value))
    if not ids:
        raise ValidationError(option, f"{path} holds no user id (one per line)")
    return ids


def _user_vectors(model_dir: Path | None, store: Store | None) -> UserVectors:
    from adrec.profiles import UserVectors

    if model_dir is not None:
        from adrec.data.interactions import Interactions
        from adrec.models.artifact import Artifact

        art = Artifact.load(model_dir)
        if art.model.user_embeddings is not None:
            return UserVectors.from_model(art.model, art.users)
        return UserVectors.from_interactions(Interactions(art.seen, art.users, art.items))
    assert store is not None
    from adrec.exceptions import NotFoundError
    from adrec.store.datasets import from_store

    try:
        return UserVectors.from_store(store)
    except NotFoundError:
        return UserVectors.from_interactions(from_store(store).interactions)


@app.command(
    epilog=(
        "Seeds come from a file of user ids, one per line (`#` starts a comment). Users are compared by the user "
        "embeddings of a model trained with `adrec train` (or, for a model without embeddings, by the ads they "
        "clicked); without `--model-dir`, by the embeddings stored in profiles, else by the clicks in the store. "
        "Segment options keep only users who match them.  \n\n"
        "Examples:  \n`adrec lookalike --seed-file buyers.txt --size 5000 --model-dir models/bpr`  \n"
        "`adrec lookalike --seed-file buyers.txt --size 500 --db sqlite:///adrec-demo/adrec.db --gender female "
        "--age 25-44 --out audience.txt`  \n`adrec lookalike --seed-file buyers.txt --size 100 --method knn --json`"
    )
)
@friendly
def lookalike(
    seed_file: Annotated[Path, typer.Option("--seed-file", help="Seed user ids, one per line.")],
    size: Annotated[int, typer.Option("--size", "-n", min=1, help="How many users the audience should hold.")],
    model_dir: Annotated[
        Path | None, typer.Option("--model-dir", help="A folder written by `adrec train` (its user vectors).")
    ] = None,
    db: DbOption = None,
    method: Annotated[
        str, typer.Option(help="`centroid` (similarity to the seeds' mean) or `knn` (to the nearest seeds).")
    ] = "centroid",
    neighbours: Annotated[int, typer.Option(min=1, help="Seeds each user is compared with under `knn`.")] = 10,
    gender: GenderOption = None,
    age: AgeOption = None,
    city_tier: CityTierOption = None,
    region: RegionOption = None,
    device: DeviceOption = None,
    interest: InterestOption = None,
    exclude_interest: ExcludeInterestOption = None,
    min_affinity: MinAffinityOption = 0.2,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Write the audience's user ids here, one a line.")
    ] = None,
    sample: SampleOption = 10,
    as_json: JsonOption = False,
) -> None:
    """Expand seed users to the `--size` users most like them, by learned user vectors."""
    from contextlib import nullcontext

    from adrec.profiles import lookalike as expand
    from adrec.profiles import resolve
    from adrec.store import open_store

    seeds = read_ids(seed_file)
    seg = _segment(gender, age, city_tier, region, device, interest, exclude_interest, min_affinity)
    constrained = seg != type(seg)(min_affinity=min_affinity)
    need_store = model_dir is None or constrained
    start = time.perf_counter()
    with open_store(settings(db_url=db).db_url, create=False) if need_store else nullcontext() as store:
        vectors = _user_vectors(model_dir, store)
        candidates = resolve(store, seg) if constrained and store is not None else None
    result = expand(vectors, [s for _, s in seeds], size, candidates=candidates, method=method, neighbours=neighbours)
    seconds = time.perf_counter() - start
    if result.unknown_seeds:
        line_of = {s: n for n, s in seeds}
        shown = ", ".join(f"{seed_file}:{line_of[s]} {s!r}" for s in result.unknown_seeds[:3])
        more = " …" if len(result.unknown_seeds) > 3 else ""
        err.print(
            f"[yellow]warning:[/] {len(result.unknown_seeds)} of {len(result.unknown_seeds) + len(result.seeds_used)} "
            f"seed users have no vector ({vectors.source}) and were left out: {shown}{more}",
            highlight=False,
        )
    if out_file is not None:
        out_file.write_text("".join(f"{u}\n" for u in result.user_ids), encoding="utf-8")
    if as_json:
        out.print_json(
            json.dumps(
                {
                    "count": len(result.user_ids),
                    "seeds_used": len(result.seeds_used),
                    "unknown_seeds": result.unknown_seeds,
                    "vectors": vectors.source,
                    "candidates": None if candidates is None else len(candidates),
                    "seconds": seconds,
                    "users": [{"user_id": u, "score": s} for u, s in zip(result.user_ids, result.scores, strict=True)][
                        : sample if out_file is not None else None
                    ],
                }
            )
        )
        return
    within = "" if candidates is None else f" within a segment of {len(candidates):,} users"
    out.print(
        f"{len(result.user_ids):,} lookalike users of {len(result.seeds_used):,} seeds{within}, by {vectors.source} "
        f"({method}, {seconds:.1f} s)" + (f" → {out_file}" if out_file is not None else ""),
        highlight=False,
    )
    if result.user_ids and sample:
        table = Table(show_header=True)
        table.add_column("#", justify="right")
        table.add_column("user")
        table.add_column("similarity", justify="right")
        for rank, (u, score) in enumerate(zip(result.user_ids[:sample], result.scores[:sample], strict=True), start=1):
            table.add_row(str(rank), u, f"{score:.3f}")
        out.print(table)
