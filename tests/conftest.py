"""Shared fixtures: store URLs for every backend, and the location of the real datasets."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

POSTGRES_URL = os.environ.get("ADREC_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("ADREC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _postgres_available() -> str | None:
    try:
        import psycopg

        with psycopg.connect(POSTGRES_URL.replace("postgresql+psycopg", "postgresql"), connect_timeout=3):
            return None
    except Exception as err:  # any failure to connect means "not available" here
        return f"{type(err).__name__}: {err}"


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The PostgreSQL URL; skips when none answers, except under CI where that is a failure."""
    problem = _postgres_available()
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL at {POSTGRES_URL} is not reachable under CI: {problem}")
        pytest.skip(f"PostgreSQL at {POSTGRES_URL} is not reachable: {problem}")
    return POSTGRES_URL


def _postgres_schema_url(base: str) -> Iterator[str]:
    """A fresh schema per test so tests never see each other's rows; dropped afterwards."""
    import psycopg

    schema = f"adrec_test_{uuid.uuid4().hex[:12]}"
    plain = base.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty store, once per registered backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/adrec.db"
    else:
        base = request.getfixturevalue("postgres_server")
        yield from _postgres_schema_url(base)


@pytest.fixture(scope="session")
def redis_server() -> str:
    """The Redis URL; skips when none answers, except under CI where that is a failure."""
    try:
        import redis

        with redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3, socket_timeout=3) as client:
            client.ping()
    except Exception as err:  # any failure to connect means "not available" here
        problem = f"{type(err).__name__}: {err}"
        if os.environ.get("CI"):
            pytest.fail(f"Redis at {REDIS_URL} is not reachable under CI: {problem}")
        pytest.skip(f"Redis at {REDIS_URL} is not reachable: {problem}")
    return REDIS_URL
