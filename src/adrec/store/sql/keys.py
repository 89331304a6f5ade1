"""The SQL key store: API keys kept as the SHA-256 of their secret (the :class:`~adrec.store.base.KeyStore` role)."""

from __future__ import annotations

from dataclasses import asdict

from sqlalchemy import (
    select,
)

from adrec.exceptions import NotFoundError
from adrec.store import tables as t
from adrec.store.base import (
    ApiKeyRecord,
)
from adrec.store.sql.engine import SqlBase

__all__ = ["SqlKeyStore"]


class SqlKeyStore(SqlBase):
    """The :class:`~adrec.store.base.KeyStore` role over SQL."""

    def put_api_key(self, key: ApiKeyRecord) -> None:
        with self._write_lock, self._engine.begin() as conn:
            conn.execute(t.api_keys.insert().values(**asdict(key)))

    def find_api_key(self, key_hash: str) -> ApiKeyRecord | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(t.api_keys).where(t.api_keys.c.key_hash == key_hash)).mappings().first()
        return ApiKeyRecord(**dict(row)) if row is not None else None

    def list_api_keys(self) -> list[ApiKeyRecord]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(t.api_keys).order_by(t.api_keys.c.created_ts)).mappings()
            return [ApiKeyRecord(**dict(r)) for r in rows]

    def revoke_api_key(self, key_id: str) -> None:
        with self._write_lock, self._engine.begin() as conn:
            n = conn.execute(t.api_keys.update().where(t.api_keys.c.key_id == key_id).values(revoked=True)).rowcount
        if n == 0:
            raise NotFoundError(f"no API key with id {key_id!r}")
