"""``adrec serve`` (the HTTP API) and ``adrec keys`` (API keys)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from adrec.cli.app import DbOption, JsonOption, app, friendly, out, settings
from adrec.exceptions import ConfigError

keys_app = typer.Typer(help="Create, list and revoke API keys of the HTTP API.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


def token_secret_file(models: Path | None) -> Path:
    """Where the token secret is kept when the ``token_secret`` setting is empty: ``MODELS/.token-secret``."""
    folder = models if models is not None else Path(".")
    return (folder if folder.is_dir() else folder.parent) / ".token-secret"


def _no_token_secret(path: Path) -> str:
    return (
        f"no token secret: {path} does not exist and the token_secret setting (ADREC_TOKEN_SECRET) is empty; "
        "copy the .token-secret of the models folder the tokens were signed with, set token_secret, or pass "
        "--create-token-secret to make a new one (tokens signed with any older secret are then refused)"
    )


def token_secret(models: Path | None, configured: str | None, *, create: bool = False) -> str:
    """The token secret: the setting if given, else the one in :func:`token_secret_file`.

    A missing file is a :class:`~adrec.exceptions.ConfigError`, unless ``create``: then a new secret is written
    there (mode 600). A new secret makes every impression token signed with an older one invalid.
    """
    from adrec.feedback.tokens import new_secret

    if configured:
        return configured
    path = token_secret_file(models)
    if path.is_file():
        return path.read_text().strip()
    if not create:
        raise ConfigError(_no_token_secret(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = new_secret()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret)
    return secret


THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
"""What the numerical libraries (NumPy's BLAS, torch) read for their thread count when a worker starts."""


def worker_threads(workers: int, cores: int, environ: Mapping[str, str]) -> dict[str, str]:
    """The thread settings for ``workers`` processes on ``cores``: each gets its share of the cores (at least one),
    so that N workers' BLAS and torch threads do not fight over the same cores (two workers on 2 cores, each with
    2 BLAS threads, served 310 requests/s with a DCN-V2 ranking; with one thread each, 505). One worker keeps the
    libraries' defaults; a variable already set is left as it is."""
    if workers <= 1:
        return {}
    share = str(max(1, cores // workers))
    return {name: share for name in THREAD_VARIABLES if name not in environ}


@app.command(
    epilog=(
        "Examples:  \n`adrec serve --db sqlite:///adrec-demo/adrec.db --models adrec-demo/models`  \n"
        "`adrec keys create --role serving --db sqlite:///adrec-demo/adrec.db` (then send it as X-API-Key)  \n"
        "`adrec serve --db sqlite:///new.db --create --models models --create-token-secret` (a new, empty store)  \n"
        "`curl -H 'X-API-Key: KEY' 'http://127.0.0.1:8000/v1/recommendations?user_id=u0001&k=5'`"
    )
)
@friendly
def serve(
    db: DbOption = None,
    models: Annotated[
        Path | None,
        typer.Option(help="Model folder written by `adrec train`, or a folder of them (CURRENT names the one)."),
    ] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes (each holds the model).")] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
    explore_share: Annotated[
        float | None, typer.Option(min=0, max=1, help="Share of slots for fresh ads [setting: 0.1].")
    ] = None,
    exploration: Annotated[
        str | None,
        typer.Option(
            help="How slots are filled: none, egreedy, softmax or thompson (the last three log each served ad's "
            "propensity) [setting: none]."
        ),
    ] = None,
    max_per_advertiser: Annotated[
        int | None, typer.Option(min=1, help="Most ads of one advertiser per response [setting: 2].")
    ] = None,
    reserve_ecpm: Annotated[float | None, typer.Option(min=0, help="Floor price, in eCPM [setting: 0].")] = None,
    index: Annotated[
        str | None, typer.Option(help="Ad vector index: auto, exact, ivf or hnsw [setting: auto].")
    ] = None,
    nprobe: Annotated[
        int | None, typer.Option(min=1, help="IVF cells scanned per query (recall vs speed) [setting: 64].")
    ] = None,
    ef_search: Annotated[
        int | None, typer.Option(min=1, help="HNSW beam width per query (recall vs speed) [setting: 256].")
    ] = None,
    create: Annotated[
        bool, typer.Option("--create", help="Create the store when --db names none (default: refuse to start).")
    ] = False,
    simulated_clock: Annotated[
        bool,
        typer.Option(
            "--simulated-clock",
            help="Test harnesses only (`adrec experiment`): every ad request and event batch must carry its time in "
            "the X-Adrec-Clock header, used instead of the wall clock [setting: off].",
        ),
    ] = False,
    create_token_secret: Annotated[
        bool,
        typer.Option(
            "--create-token-secret",
            help="Write a new token secret to MODELS/.token-secret when there is none and token_secret is unset "
            "(default: refuse to start). Tokens signed with an older secret are then refused.",
        ),
    ] = False,
) -> None:
    """Serve the HTTP API: recommendations, events, ad library, users, reports (OpenAPI at /docs).

    Every knob is a setting (defaults < `--config` TOML file < ADREC_* environment < these options): the pipeline's,
    the request limits (body sizes, requests per second per API key, the Redis that shares the rate limit between
    servers) and how often workers sync with the store; see `config/adrec.example.toml`.
    """
    import uvicorn

    from adrec.serving.limits import Limits
    from adrec.serving.main import SETTINGS_VARIABLE
    from adrec.store import open_store

    cfg = settings(
        db_url=db,
        models_dir=models,
        explore_share=explore_share,
        exploration=exploration,
        max_per_advertiser=max_per_advertiser,
        reserve_ecpm=reserve_ecpm,
        index=index,
        nprobe=nprobe,
        ef_search=ef_search,
        simulated_clock=simulated_clock or None,
    )
    models = cfg.models_dir
    limits = Limits.from_settings(cfg)
    secret_file = token_secret_file(models)
    new_secret = not cfg.token_secret and not secret_file.is_file()
    if new_secret and not create_token_secret:
        raise ConfigError(_no_token_secret(secret_file))  # checked before anything is created
    # Workers open the store with create=False: a missing one is one line here, not a traceback per worker.
    with open_store(cfg.db_url, create=create):
        pass
    if limits.redis_url:
        _check_redis(limits.redis_url)
    secret = token_secret(models, cfg.token_secret, create=create_token_secret)
    if new_secret:
        out.print(
            f"created a new token secret in {secret_file}: impression tokens signed with an older secret are refused",
            highlight=False,
        )
    # The workers get the resolved settings, secret included (the environment reaches no other process).
    os.environ["ADREC_TOKEN_SECRET"] = secret
    os.environ[SETTINGS_VARIABLE] = cfg.model_copy(update={"token_secret": secret}).model_dump_json()
    os.environ.update(worker_threads(workers, os.cpu_count() or 1, os.environ))
    out.print(f"adrec serving {cfg.db_url} with models {models} on http://{host}:{port} (docs at /docs)")
    uvicorn.run("adrec.serving.main:app", host=host, port=port, workers=workers, log_level=log_level, factory=True)


def _check_redis(url: str) -> None:
    """Fail at start, not at the first request, when the Redis of the rate limit does not answer."""
    from urllib.parse import urlsplit

    import redis

    try:
        with redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2) as client:
            client.ping()
    except (redis.RedisError, OSError, ValueError) as err:
        parts = urlsplit(url)
        shown = f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"
        raise ConfigError(f"redis_url {shown} does not answer ({type(err).__name__}: {err})") from None


@keys_app.command(
    "create",
    epilog=(
        "Examples:  \n`adrec keys create --role admin`  \n"
        "`adrec keys create --role advertiser --advertiser adv01 --name 'Acme dashboard'`"
    ),
)
@friendly
def keys_create(
    role: Annotated[str, typer.Option(help="admin, advertiser or serving.")],
    db: DbOption = None,
    advertiser: Annotated[str | None, typer.Option(help="The advertiser id (advertiser role only).")] = None,
    name: Annotated[str, typer.Option(help="What the key is for.")] = "",
    as_json: JsonOption = False,
) -> None:
    """Create an API key and print its secret (shown once; only its hash is stored)."""
    from adrec.serving.auth import create_api_key
    from adrec.store import open_store

    with open_store(settings(db_url=db).db_url, create=False) as store:
        record, secret = create_api_key(store, role, name=name, advertiser_id=advertiser)
    if as_json:
        out.print_json(json.dumps({"key_id": record.key_id, "role": record.role, "key": secret}))
    else:
        out.print(f"{record.role} key {record.key_id} created; send it as the X-API-Key header:", highlight=False)
        print(secret)


@keys_app.command("list")
@friendly
def keys_list(db: DbOption = None) -> None:
    """List API keys (ids, roles, advertisers; never secrets)."""
    from adrec.store import open_store

    with open_store(settings(db_url=db).db_url, create=False) as store:
        records = store.list_api_keys()
    table = Table("key id", "role", "advertiser", "name", "revoked")
    for r in records:
        table.add_row(r.key_id, r.role, r.advertiser_id or "", r.name, "yes" if r.revoked else "")
    out.print(table)


@keys_app.command("revoke")
@friendly
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key id shown by `adrec keys list`.")], db: DbOption = None
) -> None:
    """Revoke an API key (servers stop accepting it within 5 seconds)."""
    from adrec.store import open_store

    with open_store(settings(db_url=db).db_url, create=False) as store:
        store.revoke_api_key(key_id)
    out.print(f"revoked {key_id}")
