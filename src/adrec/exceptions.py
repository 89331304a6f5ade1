"""The exceptions adrec raises.

Every error adrec raises on purpose derives from :class:`AdrecError`, so callers can catch one class::

    AdrecError
    ├── ConfigError            a setting is missing or malformed
    ├── ValidationError        a value broke the domain model (names the field); also a ValueError
    │   ├── RowError           a row of an input file is malformed (names file, line and field)
    │   └── ModeCollapseError  a CFGAN generator collapsed and ``on_collapse="raise"`` was asked for
    ├── NotFoundError          what was asked for does not exist: a stored record, a model or model folder, an id
    │                          unknown to an id map, a profile embedding; also a KeyError
    ├── NotFittedError         a model was used before ``fit`` (or ``load``)
    ├── StoreError             the store could not be opened, migrated or written
    │   └── UnknownBackendError    the store URL names no registered backend
    ├── TokenError             an impression token is malformed, forged or expired
    └── ImportFormatError      an input file is not in the format the importer expects

A missing record is a :class:`NotFoundError`, not a :class:`StoreError`: the store worked, and what was asked
for is not there, as with a model folder or an unknown id.

Messages say what was wrong, where, and what to do about it.
"""

from __future__ import annotations

__all__ = [
    "AdrecError",
    "ConfigError",
    "ImportFormatError",
    "ModeCollapseError",
    "NotFittedError",
    "NotFoundError",
    "RowError",
    "StoreError",
    "TokenError",
    "UnknownBackendError",
    "ValidationError",
]


class AdrecError(Exception):
    """Root of every error adrec raises on purpose."""


class ConfigError(AdrecError):
    """A setting is missing or malformed."""


class ValidationError(AdrecError, ValueError):
    """A value broke the domain model.

    Parameters
    ----------
    field
        Dotted name of the offending field, e.g. ``"campaign.bid"``.
    message
        What was wrong with it.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class RowError(ValidationError):
    """A row of an input file is malformed; the message reads ``file:line: field: problem``."""

    def __init__(self, path: str, line: int, field: str, message: str) -> None:
        self.path = path
        self.line = line
        ValidationError.__init__(self, field, message)
        self.args = (f"{path}:{line}: {field}: {message}",)

    def __str__(self) -> str:
        return str(self.args[0])


class ModeCollapseError(ValidationError):
    """A CFGAN generator ended training collapsed and ``on_collapse="raise"`` was asked for."""


class NotFoundError(AdrecError, KeyError):
    """What was asked for does not exist: a stored record, a model or model folder, an id unknown to an id map."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not found"


class NotFittedError(AdrecError):
    """A model was asked for something before ``fit`` (or ``load``)."""


class StoreError(AdrecError):
    """The store could not be opened, migrated or written."""


class UnknownBackendError(StoreError):
    """The store URL names a scheme no backend is registered for."""


class TokenError(AdrecError):
    """An impression token is malformed, forged or expired."""


class ImportFormatError(AdrecError):
    """An input file or folder is not in the format the importer expects."""
