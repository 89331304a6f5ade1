"""Settings: defaults, overridden by a TOML file, overridden by ``ADREC_*`` environment variables.

Built by the CLI or the application at start-up, never at import time::

    settings = Settings.load("adrec.toml")   # or Settings.load() for defaults + environment

``config/adrec.example.toml`` lists every key with its default.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic import ValidationError as PydanticValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from adrec.exceptions import ConfigError

__all__ = ["Settings"]


class Settings(BaseSettings):
    """Every setting adrec reads. Environment variables are the upper-cased names with prefix ``ADREC_``."""

    model_config = SettingsConfigDict(env_prefix="ADREC_", extra="forbid")

    db_url: str = Field(
        default="sqlite:///adrec-demo/adrec.db", description="store URL (sqlite:///… or postgresql://…)"
    )
    data_dir: Path = Field(default=Path("../shared/data"), description="folder of the shared real datasets")
    demo_dir: Path = Field(default=Path("adrec-demo"), description="where `adrec demo` writes its files")
    seed: int = Field(default=42, description="seed for everything random")
    progress: bool = Field(default=True, description="show progress bars")
    token_secret: str = Field(
        default="",
        description=(
            "HMAC secret of impression tokens (shared by every server); empty: kept in MODELS/.token-secret, "
            "which `adrec serve --create-token-secret` creates"
        ),
    )
    max_body_bytes: int = Field(
        default=1 << 20, ge=1, description="largest request body the HTTP API reads (bytes); larger ones get 413"
    )
    max_events_body_bytes: int = Field(
        default=32 << 20,
        ge=1,
        description="largest body of POST /v1/events (bytes; a batch holds up to 50,000 events); larger: 413",
    )
    rate_limit_rps: float = Field(
        default=5_000.0,
        ge=0,
        description="requests per second one API key may make (token bucket); beyond: 429 with Retry-After; 0: off",
    )
    rate_limit_burst: int = Field(
        default=10_000, ge=1, description="requests one API key may make at once before rate_limit_rps applies"
    )
    simulated_clock: bool = Field(
        default=False,
        description="test harnesses only (`adrec experiment` over HTTP): each ad request and event batch carries its "
        "time in the X-Adrec-Clock header (Unix seconds) and the server uses it instead of the wall clock",
    )
    # -- serving (adrec serve: each worker builds its pipeline from these) ------------------------------------------
    models_dir: Path | None = Field(
        default=None,
        description="model folder written by `adrec train`, or a folder of them (CURRENT names the one), to serve",
    )
    explore_share: float = Field(default=0.1, ge=0, le=1, description="share of slots kept for fresh ads")
    exploration: str = Field(
        default="none",
        pattern="^(none|egreedy|softmax|thompson)$",
        description="how slots are filled: none (exploit and the fresh-ad share), egreedy, softmax or thompson",
    )
    epsilon: float = Field(default=0.1, ge=0, le=1, description="egreedy: chance that a slot takes a uniform ad")
    temperature: float = Field(default=0.25, gt=0, description="softmax: temperature over log-eCPM")
    prior_precision: float = Field(default=1.0, gt=0, description="thompson: precision of an unseen ad's logit")
    max_explore: int = Field(default=2, ge=0, le=100, description="most exploratory slots of one response")
    campaign_explore_share: float = Field(
        default=1.0,
        ge=0,
        le=1,
        description="most of a campaign's impressions a day (per process, after 20) that may be exploratory; 1: no cap",
    )
    propensity_draws: int = Field(
        default=200,
        ge=0,
        le=100_000,
        description="Monte Carlo runs per response for propensities without a closed form",
    )
    max_per_advertiser: int = Field(default=2, ge=1, le=100, description="most ads of one advertiser per response")
    category_decay: float = Field(
        default=0.7, gt=0, le=1, description="eCPM multiplier per ad of a category already placed (1: no diversity)"
    )
    reserve_ecpm: float = Field(default=0.0, ge=0, description="floor price in eCPM; ads below it are not shown")
    n_candidates: int = Field(default=200, ge=1, le=10_000, description="nearest neighbours that enter ranking")
    max_fresh_candidates: int = Field(
        default=0,
        ge=0,
        description="most fresh ads (the model learned nothing about) that enter a request's ranking, the most "
        "promising first (0: every eligible one)",
    )
    pcvr: float = Field(default=0.05, gt=0, le=1, description="prior conversions per click, for CPA eCPM")
    pcvr_prior_clicks: float = Field(
        default=50.0, gt=0, description="weight (in clicks) of the prior in each campaign's estimated pCVR"
    )
    spend_refresh_s: float = Field(default=1.0, ge=0, description="how often budgets are re-read from the store")
    repeat_decay: float = Field(
        default=1.0,
        gt=0,
        le=1,
        description="pCTR multiplier per earlier impression of the same ad to the same user within repeat_window_s "
        "(1: off)",
    )
    repeat_window_s: float = Field(
        default=86_400.0, ge=0, description="how far back a user's impressions of an ad lower its pCTR (seconds)"
    )
    outstanding_window_s: float = Field(
        default=600.0,
        ge=0,
        description="how long the expected cost of a token handed out counts against its budget before its events "
        "arrive (seconds); 0: off",
    )
    index: str = Field(
        default="auto", pattern="^(auto|exact|ivf|hnsw)$", description="ad vector index: auto, exact, ivf or hnsw"
    )
    nprobe: int = Field(default=64, ge=1, description="IVF cells scanned per query (recall vs speed)")
    ef_search: int = Field(default=256, ge=1, description="HNSW beam width per query (recall vs speed)")
    sync_interval_s: float = Field(
        default=1.0,
        ge=0,
        description="how often each serving process checks the store for changes of the ad library or the model made "
        "by other processes (seconds; such a change reaches every process within about this long); 0: never",
    )
    redis_url: str = Field(
        default="",
        description="Redis holding the rate-limit buckets, shared by every server process (redis://host:6379/0); "
        "empty: each process keeps its own",
    )

    @classmethod
    def load(cls, path: str | Path | None = None, **overrides: Any) -> Settings:
        """Defaults, then the TOML file at ``path`` (if any), then ``ADREC_*`` variables, then ``overrides``."""
        values: dict[str, Any] = {}
        if path is not None:
            p = Path(path)
            try:
                values = tomllib.loads(p.read_text(encoding="utf-8"))
            except FileNotFoundError:
                raise ConfigError(f"config file {p} does not exist") from None
            except tomllib.TOMLDecodeError as err:
                raise ConfigError(f"{p}: {err}") from None
        try:
            # Environment variables win over the file: pass file values as defaults via the class.
            env = cls()  # defaults + environment
            merged = {**values, **{k: v for k, v in env.model_dump().items() if k in env.model_fields_set}}
            merged.update({k: v for k, v in overrides.items() if v is not None})
            return cls(**merged)
        except PydanticValidationError as err:
            first = err.errors()[0]
            field = ".".join(str(x) for x in first["loc"])
            raise ConfigError(f"setting {field!r}: {first['msg']} (from {path or 'environment'})") from None
