"""Profile commands: ``build-profiles``, ``profile`` (explain one user) and ``segment`` (resolve an audience)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from adrec.cli.app import DbOption, JsonOption, app, friendly, out, settings
from adrec.exceptions import ValidationError

if TYPE_CHECKING:
    from adrec.profiles import Profile


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def _parse_time(value: str) -> float:
    """Seconds since the epoch, or an ISO date/datetime (UTC unless it says otherwise)."""
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError("--since", f"{value!r} is neither seconds since the epoch nor an ISO date") from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


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
        "`adrec build-profiles --since 2025-01-14 --half-life-days 7`"
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
    as_json: JsonOption = False,
) -> None:
    """Build every user's profile from the stored events (or update it with the events since a time)."""
    from adrec.profiles import ProfileBuilder
    from adrec.store import open_store

    builder = ProfileBuilder(half_life_days=half_life_days)
    start = time.perf_counter()
    with open_store(settings(db_url=db).db_url) as store:
        report = builder.rebuild(store) if since is None else builder.update_window(store, _parse_time(since))
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

    with open_store(settings(db_url=db).db_url) as store:
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
@app.command(
    epilog=(
        "Examples:  \n`adrec segment --db sqlite:///adrec-demo/adrec.db --gender female --age 25-34 --city-tier 1 "
        "--interest cosmetics`  \n`adrec segment --interest brand:Acme --min-affinity 0.3 --json`"
    )
)
@friendly
def segment(
    db: DbOption = None,
    gender: Annotated[list[str] | None, typer.Option(help="female, male, other or unknown; repeatable.")] = None,
    age: Annotated[str | None, typer.Option(help="Age range, e.g. 25-34, 50- or -17.")] = None,
    city_tier: Annotated[list[int] | None, typer.Option(help="City tier 1-6; repeatable.")] = None,
    region: Annotated[list[str] | None, typer.Option(help="Region; repeatable.")] = None,
    device: Annotated[list[str] | None, typer.Option(help="mobile, desktop, tablet, tv, ...; repeatable.")] = None,
    interest: Annotated[
        list[str] | None,
        typer.Option(help="Interest: a category, `brand:NAME` or `price:BAND`; any of them matches; repeatable."),
    ] = None,
    exclude_interest: Annotated[list[str] | None, typer.Option(help="Leave out users with this interest.")] = None,
    min_affinity: Annotated[float, typer.Option(help="Smallest affinity share that counts as an interest.")] = 0.2,
    sample: Annotated[int, typer.Option(min=0, help="How many user ids to print.")] = 10,
    as_json: JsonOption = False,
) -> None:
    """Resolve a rule-defined audience to its users; print the count and a sample."""
    from adrec.profiles import Segment, resolve
    from adrec.store import open_store

    age_min, age_max = _parse_age(age) if age else (None, None)
    seg = Segment(
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
    with open_store(settings(db_url=db).db_url) as store:
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
