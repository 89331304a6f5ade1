"""The SQL store over SQLAlchemy Core, for SQLite (embedded) and PostgreSQL (scale-out): one module per role
(:mod:`.market`, :mod:`.events`, :mod:`.ledger`, :mod:`.profiles`, :mod:`.keys`) over shared plumbing
(:mod:`.engine`), joined in :class:`SqlStore`, which :func:`adrec.store.open_store` returns for ``sqlite://`` and
``postgresql://`` URLs."""

from adrec.store.sql.store import SqlStore

__all__ = ["SqlStore"]
