"""The SQL profile store: behaviour, interests and embeddings of users, and segments resolved in SQL (the
:class:`~adrec.store.base.ProfileStore` role)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import (
    and_,
    bindparam,
    func,
    or_,
    select,
)

from adrec.data.profile import Behaviour, InterestStats, Profile
from adrec.data.segment import Segment
from adrec.exceptions import NotFoundError
from adrec.store import tables as t
from adrec.store.sql.engine import CHUNK, IN_CHUNK, DriverQuery, SqlBase
from adrec.store.sql.market import user_of_row

__all__ = ["SqlProfileStore"]

_PROFILE_FIELDS = tuple(c.name for c in t.profiles.columns if c.name != "user_id")


def _profile_row(p: Profile, now: float) -> dict[str, Any]:
    b = p.behaviour
    row: dict[str, Any] = {"user_id": p.user_id, "updated_at": now}
    row["embedding"] = None if p.embedding is None else list(p.embedding)
    if b is None:
        row.update(dict.fromkeys(("ref_ts", "first_ts", "last_ts", "impressions", "clicks", "conversions", "ctr")))
        row.update(decayed=None, hours=None)
        return row
    row.update(
        ref_ts=b.ref_ts,
        first_ts=b.first_ts,
        last_ts=b.last_ts,
        impressions=b.impressions,
        clicks=b.clicks,
        conversions=b.conversions,
        decayed=list(b.decayed),
        ctr=b.ctr,
        hours=list(b.hours),
    )
    return row


def _interest_rows(p: Profile) -> list[tuple[Any, ...]]:
    b = p.behaviour
    if b is None:
        return []
    rows = []
    for dimension, stats in b.interests.items():
        shares = b.affinities(dimension)
        for value, s in stats.items():
            rows.append((p.user_id, dimension, value, s.score, shares.get(value, 0.0), *s[1:]))
    return rows


def _profile(row: dict[str, Any], interests: dict[str, dict[str, Any]]) -> Profile:
    fields = {c: row.pop(f"p_{c}") for c in _PROFILE_FIELDS}
    user = user_of_row(row)
    behaviour = None
    if fields["ref_ts"] is not None:
        behaviour = Behaviour(
            ref_ts=fields["ref_ts"],
            first_ts=fields["first_ts"],
            last_ts=fields["last_ts"],
            impressions=fields["impressions"],
            clicks=fields["clicks"],
            conversions=fields["conversions"],
            decayed=tuple(fields["decayed"]),
            ctr=fields["ctr"],
            hours=tuple(fields["hours"]),
            interests=interests,
        )
    embedding = fields["embedding"]
    return Profile(user, behaviour, None if embedding is None else tuple(embedding), updated_at=fields["updated_at"])


class SqlProfileStore(SqlBase):
    """The :class:`~adrec.store.base.ProfileStore` role over SQL."""

    def __init__(self, url: str, *, create: bool = True) -> None:
        super().__init__(url, create=create)
        self._one_profile: DriverQuery | None = None

    # -- profiles --------------------------------------------------------------------------------------------
    def upsert_profiles(self, profiles: Iterable[Profile]) -> int:
        """Store each profile's behaviour and embedding (declared attributes live in ``users``), replacing the
        stored ones; the last of repeated user ids wins. A profile of a user without a record is refused."""
        latest = {p.user_id: p for p in profiles}
        if not latest:
            return 0
        now = time.time()
        sql, columns, is_json = self._upsert_sql(t.profiles, "user_id")
        pi_cols = [c.name for c in t.profile_interests.columns]
        marks = ", ".join([self._ph] * len(pi_cols))
        insert_interests = f"INSERT INTO {t.profile_interests.name} ({', '.join(pi_cols)}) VALUES ({marks})"
        delete_interests = f"DELETE FROM {t.profile_interests.name} WHERE user_id = {self._ph}"
        items = list(latest.values())
        with self._write_lock, self._engine.begin() as conn:
            raw = conn.connection.dbapi_connection
            assert raw is not None
            cur = raw.cursor()
            try:
                for start in range(0, len(items), CHUNK):
                    chunk = items[start : start + CHUNK]
                    rows, interests = [], []
                    for p in chunk:
                        row = _profile_row(p, now)
                        rows.append(
                            tuple(json.dumps(row[c]) if j else row[c] for c, j in zip(columns, is_json, strict=True))
                        )
                        interests += _interest_rows(p)
                    self._executemany(cur, sql, rows, t.profiles.name)
                    cur.executemany(delete_interests, [(p.user_id,) for p in chunk])
                    if interests:
                        self._executemany(cur, insert_interests, interests, t.profile_interests.name)
            finally:
                cur.close()
        return len(items)

    def _profile_query(self) -> Any:
        u, p = t.users, t.profiles
        extra = [p.c[c].label(f"p_{c}") for c in _PROFILE_FIELDS]
        return select(u, *extra).select_from(u.outerjoin(p, p.c.user_id == u.c.user_id))

    def _assemble(self, conn: Any, rows: list[dict[str, Any]]) -> list[Profile]:
        pi = t.profile_interests
        with_behaviour = [r["user_id"] for r in rows if r["p_ref_ts"] is not None]
        interests: dict[str, dict[str, dict[str, InterestStats]]] = {}
        for start in range(0, len(with_behaviour), IN_CHUNK):
            query = (
                select(pi)
                .where(pi.c.user_id.in_(with_behaviour[start : start + IN_CHUNK]))
                .order_by(pi.c.user_id, pi.c.dimension, pi.c.value)
            )
            # Plain tuples in table column order: user_id, dimension, value, score, share, then the evidence.
            for user_id, dimension, value, score, _share, *evidence in conn.execute(query).all():
                interests.setdefault(user_id, {}).setdefault(dimension, {})[value] = InterestStats(score, *evidence)
        return [_profile(r, interests.get(r["user_id"], {})) for r in rows]

    def get_profiles(self, user_ids: Sequence[str]) -> dict[str, Profile]:
        """Profiles of the users among ``user_ids`` that have a record, by user id (unknown ids are left out)."""
        wanted = list(dict.fromkeys(user_ids))
        out: dict[str, Profile] = {}
        with self._engine.connect() as conn:
            for start in range(0, len(wanted), IN_CHUNK):
                query = self._profile_query().where(t.users.c.user_id.in_(wanted[start : start + IN_CHUNK]))
                rows = [dict(r) for r in conn.execute(query).mappings()]
                out.update((p.user_id, p) for p in self._assemble(conn, rows))
        return {u: out[u] for u in wanted if u in out}

    def get_profile(self, user_id: str) -> Profile:
        """The user's profile: declared attributes always, behaviour and embedding where stored.

        On the serving path (once per ad request): the statement is built once and reused.
        """
        query = self._one_profile
        if query is None:
            query = self._one_profile = DriverQuery(
                self._engine, self._profile_query().where(t.users.c.user_id == bindparam("uid"))
            )
        row = query.first({"uid": user_id})
        if row is None:
            raise NotFoundError(f"no user with id {user_id!r}")
        if row["p_ref_ts"] is None:  # no behaviour: no interest rows to read
            return _profile(row, {})
        with self._engine.connect() as conn:
            return self._assemble(conn, [row])[0]

    def iter_profiles(self, batch_size: int = 10_000) -> Iterator[list[Profile]]:
        """Every user's profile, ``batch_size`` at a time, in user-id order."""
        last: str | None = None
        while True:
            query = self._profile_query().order_by(t.users.c.user_id).limit(batch_size)
            if last is not None:
                query = query.where(t.users.c.user_id > last)
            with self._engine.connect() as conn:
                rows = [dict(r) for r in conn.execute(query).mappings()]
                if not rows:
                    return
                profiles = self._assemble(conn, rows)
            yield profiles
            last = rows[-1]["user_id"]

    def resolve_segment(self, segment: Segment) -> list[str]:
        """The ids of the users in ``segment``, sorted, from one query (see :mod:`adrec.profiles.segments`).

        Under ``interest_match="targeting"`` a user's interests are read as
        :func:`adrec.data.targeting.targeting_interests` reads them: none without consent, else the declared ones
        (the ``interests`` JSON array) and the :data:`~adrec.data.targeting.TOP_CATEGORIES` categories of highest
        share above 0, ties by name in code-point order.
        """
        from adrec.data.targeting import TOP_CATEGORIES

        u, pi = t.users, t.profile_interests
        conds: list[Any] = []
        if segment.age_min is not None:
            conds.append(u.c.age >= segment.age_min)
        if segment.age_max is not None:
            conds.append(u.c.age <= segment.age_max)
        if segment.genders:
            conds.append(u.c.gender.in_(sorted(g.value for g in segment.genders)))
        if segment.regions:
            conds.append(u.c.region.in_(sorted(segment.regions)))
        if segment.city_tiers:
            conds.append(u.c.city_tier.in_(sorted(segment.city_tiers)))
        if segment.devices:
            conds.append(u.c.device.in_(sorted(d.value for d in segment.devices)))
        postgres = self._dialect == "postgresql"

        def targeted(tags: frozenset[str]) -> Any:
            """Users with one of ``tags`` among their targeting interests."""
            wanted = sorted(tags)
            elements = func.json_array_elements_text if postgres else func.json_each
            declared = elements(u.c.interests).table_valued("value")
            # Ranks only the categories of users who have one of the tags at all (found through the value index).
            holders = select(pi.c.user_id).where(pi.c.dimension == "category", pi.c.value.in_(wanted), pi.c.share > 0)
            # Ties in share go by name in code-point order, as Python sorts strings: SQLite's default collation,
            # PostgreSQL's "C".
            name = pi.c.value.collate("C") if postgres else pi.c.value
            rank = func.row_number().over(partition_by=pi.c.user_id, order_by=(pi.c.share.desc(), name))
            ranked = (
                select(pi.c.user_id, pi.c.value, rank.label("rank"))
                .where(pi.c.dimension == "category", pi.c.share > 0, pi.c.user_id.in_(holders))
                .subquery()
            )
            top = select(ranked.c.user_id).where(ranked.c.rank <= TOP_CATEGORIES, ranked.c.value.in_(wanted))
            has_declared = select(declared.c.value).where(declared.c.value.in_(wanted)).exists()
            return and_(u.c.consent.is_(True), or_(has_declared, u.c.user_id.in_(top)))

        def interested(keys: list[tuple[str, str]]) -> Any:
            return select(pi.c.user_id).where(
                or_(*(and_(pi.c.dimension == d, pi.c.value == v) for d, v in keys)),
                pi.c.share >= segment.min_affinity,
            )

        if segment.interest_match == "targeting":
            if segment.interests_include:
                conds.append(targeted(segment.interests_include))
            if segment.interests_exclude:
                conds.append(~targeted(segment.interests_exclude))
        else:
            if segment.behavioural:
                conds.append(u.c.consent.is_(True))
            if segment.interests_include:
                conds.append(u.c.user_id.in_(interested(segment.include_keys())))
            if segment.interests_exclude:
                conds.append(u.c.user_id.not_in(interested(segment.exclude_keys())))
        with self._engine.connect() as conn:
            return [r[0] for r in conn.execute(select(u.c.user_id).where(*conds).order_by(u.c.user_id))]
