"""The Typer application, shared options and error handling of the ``adrec`` command line.

Errors a user can cause (a bad path, a malformed row, an unknown format) print one line and exit with status 1;
Typer's own usage errors exit with status 2. Tracebacks are kept for bugs.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console

from adrec.config import Settings
from adrec.exceptions import AdrecError, ValidationError

P = ParamSpec("P")
R = TypeVar("R")

app = typer.Typer(
    name="adrec",
    help="adrec: personalized ad recommendation — profiles, ad library, recommenders, serving, evaluation.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
    add_completion=False,
)
out = Console()
err = Console(stderr=True)


class State:
    config: Path | None = None


def settings(**overrides: Any) -> Settings:
    return Settings.load(State.config, **overrides)


def friendly(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn adrec's own errors into one red line on stderr and exit status 1."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except AdrecError as e:
            err.print(f"[bold red]error:[/] {e}", highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err.print("[yellow]interrupted[/]")
            raise typer.Exit(130) from None

    return wrapper


def parse_time(value: str, option: str) -> float:
    """Seconds since the epoch, or an ISO date/datetime (UTC unless it says otherwise); a clear error naming
    ``option`` otherwise."""
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError(option, f"{value!r} is neither seconds since the epoch nor an ISO date") from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


DbOption = Annotated[
    str | None,
    typer.Option("--db", help="Store URL, e.g. `sqlite:///adrec-demo/adrec.db` or `postgresql://user@host/db`."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]
ProgressOption = Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")]


@app.callback()
def main_options(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="TOML settings file (see config/adrec.example.toml).", exists=False),
    ] = None,
) -> None:
    """Run `adrec COMMAND --help` for each command's options and examples."""
    State.config = config
