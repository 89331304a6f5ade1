"""The ``adrec`` command line: thin Typer commands over the library.

Errors a user can cause (a bad path, a malformed row, an unknown format) print one line and exit with status 1;
Typer's own usage errors exit with status 2. Tracebacks are kept for bugs.
"""

from __future__ import annotations

from adrec.cli import experiment, market, models, ope, profiles, serve  # noqa: F401  (importing registers the commands)
from adrec.cli.app import app

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    app(prog_name="adrec")


if __name__ == "__main__":
    main()
