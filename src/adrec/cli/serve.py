"""``adrec serve`` (the HTTP API) and ``adrec keys`` (API keys)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from adrec.cli.app import DbOption, JsonOption, app, friendly, out, settings

keys_app = typer.Typer(help="Create, list and revoke API keys of the HTTP API.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


def token_secret(models: Path | None, configured: str | None) -> str:
    """The token secret: the setting if given, else ``MODELS/.token-secret`` (created once, mode 600)."""
    from adrec.serving.tokens import new_secret

    if configured:
        return configured
    folder = models if models is not None else Path(".")
    path = (folder if folder.is_dir() else folder.parent) / ".token-secret"
    if path.is_file():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = new_secret()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret)
    return secret


@app.command(
    epilog=(
        "Examples:  \n`adrec serve --db sqlite:///adrec-demo/adrec.db --models adrec-demo/models`  \n"
        "`adrec keys create --role serving --db sqlite:///adrec-demo/adrec.db` (then send it as X-API-Key)  \n"
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
    explore_share: Annotated[float, typer.Option(min=0, max=1, help="Share of slots for fresh ads.")] = 0.1,
    max_per_advertiser: Annotated[int, typer.Option(min=1, help="Most ads of one advertiser per response.")] = 2,
    reserve_ecpm: Annotated[float, typer.Option(min=0, help="Floor price, in eCPM.")] = 0.0,
    index: Annotated[str, typer.Option(help="Ad vector index: auto, exact, ivf or hnsw.")] = "auto",
    nprobe: Annotated[int, typer.Option(min=1, help="IVF cells scanned per query (recall vs speed).")] = 64,
    ef_search: Annotated[int, typer.Option(min=1, help="HNSW beam width per query (recall vs speed).")] = 256,
) -> None:
    """Serve the HTTP API: recommendations, events, ad library, users, reports (OpenAPI at /docs)."""
    import uvicorn

    cfg = settings(db_url=db)
    secret = token_secret(models, cfg.token_secret)
    os.environ["ADREC_SERVE_DB"] = cfg.db_url
    os.environ["ADREC_SERVE_MODELS"] = str(models) if models is not None else ""
    os.environ["ADREC_TOKEN_SECRET"] = secret
    os.environ["ADREC_SERVE_PIPELINE"] = json.dumps(
        {"explore_share": explore_share, "max_per_advertiser": max_per_advertiser, "reserve_ecpm": reserve_ecpm}
    )
    os.environ["ADREC_SERVE_INDEX"] = json.dumps(
        {"kind": index, "params": {"nprobe": nprobe} if index == "ivf" else {"ef_search": ef_search}}
    )
    out.print(f"adrec serving {cfg.db_url} with models {models} on http://{host}:{port} (docs at /docs)")
    uvicorn.run("adrec.serving.main:app", host=host, port=port, workers=workers, log_level=log_level, factory=True)


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

    with open_store(settings(db_url=db).db_url) as store:
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

    with open_store(settings(db_url=db).db_url) as store:
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

    with open_store(settings(db_url=db).db_url) as store:
        store.revoke_api_key(key_id)
    out.print(f"revoked {key_id}")
