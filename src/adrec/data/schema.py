"""Typed records of the ad market: users, advertisers, campaigns, ads, targeting rules and events.

Each record validates itself on construction and raises :class:`adrec.exceptions.ValidationError` naming the
offending field. Records are immutable; use ``record.model_copy(update={...})`` to derive a changed one.

Events also have a columnar form, :class:`EventBatch`, validated with vectorized checks, because the simulator
and the importers move millions of them.
"""

from __future__ import annotations

import enum
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Self

import numpy as np
import numpy.typing as npt
import pydantic
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from adrec.exceptions import ValidationError

__all__ = [
    "AGE_BAND_EDGES",
    "AGE_BAND_LABELS",
    "Ad",
    "Advertiser",
    "Audience",
    "Campaign",
    "CampaignStatus",
    "Device",
    "Event",
    "EventBatch",
    "EventType",
    "FrequencyCap",
    "Gender",
    "Objective",
    "Pacing",
    "PricingModel",
    "Targeting",
    "User",
    "age_band",
    "day_name",
    "to_epoch",
    "utc_day",
]

MAX_ID_LENGTH = 200
MAX_MONEY = 1e9
"""The largest bid, budget or product price a record takes (in the currency unit)."""
MAX_CAP = 1_000_000
"""The largest frequency cap (impressions per window)."""
MAX_WINDOW_S = 366 * 86_400.0
"""The longest frequency-cap window: a year."""
MAX_TAGS = 1000
"""The most values one targeting or audience field lists."""


class EventType(enum.IntEnum):
    """What happened to an ad in front of a user. Stored as the small integer."""

    IMPRESSION = 0
    CLICK = 1
    CONVERSION = 2

    @classmethod
    def parse(cls, value: str | int | EventType) -> EventType:
        """Accept the name (any case), the integer code or the member itself."""
        if isinstance(value, EventType):
            return value
        if isinstance(value, str):
            known = _EVENT_TYPE_NAMES.get(value)  # the common spelling, without strip/upper
            if known is not None:
                return known
            try:
                return cls[value.strip().upper()]
            except KeyError:
                pass
        elif isinstance(value, int) and not isinstance(value, bool):
            try:
                return cls(value)
            except ValueError:
                pass
        names = ", ".join(m.name.lower() for m in cls)
        raise ValidationError("event.type", f"unknown event type {value!r}; expected one of {names}")


_EVENT_TYPE_NAMES = {t.name.lower(): t for t in EventType}


class Gender(enum.StrEnum):
    FEMALE = "female"
    MALE = "male"
    OTHER = "other"
    UNKNOWN = "unknown"


class Device(enum.StrEnum):
    MOBILE = "mobile"
    DESKTOP = "desktop"
    TABLET = "tablet"
    TV = "tv"
    OTHER = "other"
    UNKNOWN = "unknown"


class PricingModel(enum.StrEnum):
    """How the advertiser pays: per click, per thousand impressions, or per conversion (action)."""

    CPC = "CPC"
    CPM = "CPM"
    CPA = "CPA"


class Objective(enum.StrEnum):
    AWARENESS = "awareness"
    TRAFFIC = "traffic"
    CONVERSIONS = "conversions"


class CampaignStatus(enum.StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    PAUSED = "paused"
    ENDED = "ended"


class Pacing(enum.StrEnum):
    """How a campaign spends its daily budget: spread evenly over the day, or as fast as it wins."""

    EVEN = "even"
    ASAP = "asap"


AGE_BAND_EDGES = (18, 25, 35, 45, 55, 65)
"""Lower edges of the age bands after the first (:data:`AGE_BAND_LABELS`)."""
AGE_BAND_LABELS = ("13-17", "18-24", "25-34", "35-44", "45-54", "55-64", "65+")


def age_band(age: int) -> str:
    """The age band label (``"25-34"`` ...) of an age in years (under 18: ``"13-17"``)."""
    return AGE_BAND_LABELS[sum(age >= edge for edge in AGE_BAND_EDGES)]


def _check_id(value: str) -> str:
    if not value:
        raise ValueError("must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise ValueError(f"is {len(value)} characters long; at most {MAX_ID_LENGTH} are allowed")
    if value != value.strip() or any(ch in value for ch in "\r\n\t\x00"):
        raise ValueError("must not contain tabs, newlines, NUL or leading/trailing spaces")
    return value


ID_PATTERN = r"^[^\s\x00](?:[^\t\r\n\x00]*[^\s\x00])?$"
"""What :data:`Id` admits, as the JSON-schema pattern the API documents (checked by ``_check_id``, whose messages
say what is wrong)."""

Id = Annotated[
    str,
    Field(min_length=1, max_length=MAX_ID_LENGTH, json_schema_extra={"pattern": ID_PATTERN}),
    AfterValidator(_check_id),
]
Tag = Annotated[str, Field(min_length=1, max_length=100)]


def to_epoch(value: datetime | float | int) -> float:
    """Seconds since the Unix epoch (UTC). Naive datetimes are taken as UTC."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    return float(value)


@functools.lru_cache(maxsize=4096)
def day_name(day: int) -> str:
    """``YYYY-MM-DD`` of the UTC day number ``day`` (whole days since the epoch)."""
    return datetime.fromtimestamp(day * 86_400, UTC).strftime("%Y-%m-%d")


def utc_day(ts: float) -> str:
    """``YYYY-MM-DD`` of a Unix time in UTC: the day budgets and reports are kept by."""
    return day_name(int(ts // 86_400))


def _pydantic_to_adrec(model: type[BaseModel], err: pydantic.ValidationError) -> ValidationError:
    first = err.errors()[0]
    loc = ".".join(str(part) for part in first["loc"]) or "(record)"
    inner = (first.get("ctx") or {}).get("error")
    if isinstance(inner, ValidationError):  # a nested record's own error: keep the full path to its field
        return ValidationError(f"{model.__name__.lower()}.{loc}.{inner.field.partition('.')[2]}", inner.message)
    msg = first["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    got = first.get("input")
    if first["type"] not in ("missing",) and not isinstance(got, dict):
        msg = f"{msg} (got {got!r})"
    return ValidationError(f"{model.__name__.lower()}.{loc}", msg)


class Record(BaseModel):
    """Base of every record: frozen, strict about unknown fields, raises adrec's ValidationError."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=False, str_strip_whitespace=False)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except pydantic.ValidationError as err:
            raise _pydantic_to_adrec(type(self), err) from None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Build a record from a plain dictionary (e.g. a row read back from the store)."""
        return cls(**data)


class Audience(Record):
    """Who a rule is about: the audience fields shared by :class:`Targeting` and
    :class:`~adrec.profiles.Segment`. An empty field means "no restriction on this dimension"."""

    age_min: int | None = Field(default=None, ge=0, le=120)
    age_max: int | None = Field(default=None, ge=0, le=120)
    genders: frozenset[Gender] = frozenset()
    regions: frozenset[Tag] = Field(default=frozenset(), max_length=MAX_TAGS)
    city_tiers: frozenset[Annotated[int, Field(ge=1, le=6)]] = frozenset()
    devices: frozenset[Device] = frozenset()
    interests_include: frozenset[Tag] = Field(default=frozenset(), max_length=MAX_TAGS)
    interests_exclude: frozenset[Tag] = Field(default=frozenset(), max_length=MAX_TAGS)

    @model_validator(mode="after")
    def _ranges(self) -> Self:
        if self.age_min is not None and self.age_max is not None and self.age_min > self.age_max:
            raise ValueError(f"age_min {self.age_min} is above age_max {self.age_max}")
        both = self.interests_include & self.interests_exclude
        if both:
            raise ValueError(f"interests both included and excluded: {sorted(both)}")
        return self


class Targeting(Audience):
    """Who may see a campaign's ads. An empty field means "no restriction on this dimension".

    Interest tags match a user's declared or derived interests; ``interests_exclude`` wins over
    ``interests_include``. Hours are 0-23 in the user's local time, days of week 0 (Monday) to 6 (Sunday).
    """

    hours: frozenset[Annotated[int, Field(ge=0, le=23)]] = frozenset()
    days_of_week: frozenset[Annotated[int, Field(ge=0, le=6)]] = frozenset()

    def is_open(self) -> bool:
        """True when the rule restricts nothing."""
        return self == Targeting()


class FrequencyCap(Record):
    """How often one user may see a campaign's ads within a sliding window (None = no cap)."""

    per_ad: int | None = Field(default=None, ge=1, le=MAX_CAP, description="impressions of any one ad of the campaign")
    per_campaign: int | None = Field(
        default=None, ge=1, le=MAX_CAP, description="impressions of all the campaign's ads"
    )
    window_s: float = Field(
        default=86_400.0, gt=0, le=MAX_WINDOW_S, allow_inf_nan=False, description="window length in seconds"
    )


class User(Record):
    """A person ads are shown to, as declared by the platform (derived interests live in profiles)."""

    user_id: Id
    age: int | None = Field(default=None, ge=0, le=120)
    age_band: str | None = Field(default=None, max_length=20)
    gender: Gender = Gender.UNKNOWN
    region: str | None = Field(default=None, max_length=100)
    city: str | None = Field(default=None, max_length=100)
    city_tier: int | None = Field(default=None, ge=1, le=6)
    device: Device = Device.UNKNOWN
    language: str | None = Field(default=None, pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")
    interests: tuple[Tag, ...] = Field(default=(), max_length=MAX_TAGS)
    consent: bool = Field(default=True, description="consent to behavioural targeting")
    attrs: dict[str, str] = Field(default_factory=dict, description="source-specific extra attributes")


class Advertiser(Record):
    advertiser_id: Id
    name: str = Field(min_length=1, max_length=200)
    domain: str | None = Field(default=None, max_length=200)


class Campaign(Record):
    """A budgeted, scheduled buy of an advertiser, with a bid in the currency unit of its pricing model.

    ``bid`` is per click (CPC), per thousand impressions (CPM) or per conversion (CPA).
    """

    campaign_id: Id
    advertiser_id: Id
    name: str = Field(min_length=1, max_length=200)
    objective: Objective = Objective.TRAFFIC
    pricing_model: PricingModel = PricingModel.CPC
    bid: float = Field(gt=0, le=MAX_MONEY, allow_inf_nan=False)
    daily_budget: float | None = Field(default=None, gt=0, le=MAX_MONEY, allow_inf_nan=False)
    total_budget: float | None = Field(default=None, gt=0, le=MAX_MONEY, allow_inf_nan=False)
    start: datetime | None = None
    end: datetime | None = None
    status: CampaignStatus = CampaignStatus.ACTIVE
    targeting: Targeting = Field(default_factory=Targeting)
    frequency: FrequencyCap = Field(default_factory=FrequencyCap)
    pacing: Pacing = Pacing.EVEN

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.daily_budget is not None and self.total_budget is not None and (self.daily_budget > self.total_budget):
            raise ValueError(f"daily_budget {self.daily_budget} exceeds total_budget {self.total_budget}")
        if self.start is not None and self.end is not None and to_epoch(self.end) <= to_epoch(self.start):
            raise ValueError("end must be after start")
        return self


_URL = r"^https?://[^\s]+$"


class Ad(Record):
    """An ad with its creative. ``price`` is the advertised product's price, not the bid."""

    ad_id: Id
    campaign_id: Id
    title: str = Field(default="", max_length=300)
    body: str = Field(default="", max_length=5000)
    image_url: str | None = Field(default=None, pattern=_URL, max_length=2000)
    landing_url: str | None = Field(default=None, pattern=_URL, max_length=2000)
    category: str | None = Field(default=None, max_length=200)
    brand: str | None = Field(default=None, max_length=200)
    price: float | None = Field(default=None, ge=0, le=MAX_MONEY, allow_inf_nan=False)
    status: CampaignStatus = CampaignStatus.ACTIVE


class Event(Record):
    """One impression, click or conversion. ``event_id`` makes ingestion idempotent.

    ``ts`` is seconds since the Unix epoch (a datetime is converted). ``value`` carries an explicit rating or an
    order value; ``propensity`` the logging policy's probability of showing this ad (for off-policy evaluation).
    """

    event_id: Id
    type: EventType
    user_id: Id
    ad_id: Id
    ts: float = Field(allow_inf_nan=False)
    placement: str | None = Field(default=None, max_length=100)
    cost: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    request_id: str | None = Field(default=None, max_length=200)
    value: float | None = Field(default=None, allow_inf_nan=False)
    propensity: float | None = Field(default=None, gt=0, le=1)

    @pydantic.field_validator("type", mode="before")
    @classmethod
    def _type(cls, value: Any) -> EventType:
        try:
            return EventType.parse(value)
        except ValidationError as err:
            raise ValueError(err.message) from None

    @pydantic.field_validator("ts", mode="before")
    @classmethod
    def _ts(cls, value: Any) -> Any:
        return to_epoch(value) if isinstance(value, datetime) else value


def _optional_floats(values: Sequence[float | None]) -> npt.NDArray[np.float64]:
    return np.array([math.nan if v is None else v for v in values], dtype=np.float64)


@dataclass(frozen=True)
class EventBatch:
    """Events as columns: one NumPy array per field, all the same length.

    Missing optional values are ``None`` in object columns and NaN in float columns. Build one with
    :meth:`from_events` or directly from arrays, then call :meth:`validate` (the store does).
    """

    event_id: npt.NDArray[np.object_]
    type: npt.NDArray[np.int8]
    user_id: npt.NDArray[np.object_]
    ad_id: npt.NDArray[np.object_]
    ts: npt.NDArray[np.float64]
    placement: npt.NDArray[np.object_] = field(default=None)  # type: ignore[arg-type]
    cost: npt.NDArray[np.float64] = field(default=None)  # type: ignore[arg-type]
    request_id: npt.NDArray[np.object_] = field(default=None)  # type: ignore[arg-type]
    value: npt.NDArray[np.float64] = field(default=None)  # type: ignore[arg-type]
    propensity: npt.NDArray[np.float64] = field(default=None)  # type: ignore[arg-type]

    COLUMNS: ClassVar[tuple[str, ...]] = (
        "event_id",
        "type",
        "user_id",
        "ad_id",
        "ts",
        "placement",
        "cost",
        "request_id",
        "value",
        "propensity",
    )

    def __post_init__(self) -> None:
        n = len(self.event_id)
        fill: dict[str, Any] = {
            "placement": lambda: np.full(n, None, dtype=object),
            "request_id": lambda: np.full(n, None, dtype=object),
            "cost": lambda: np.zeros(n),
            "value": lambda: np.full(n, np.nan),
            "propensity": lambda: np.full(n, np.nan),
        }
        for name in self.COLUMNS:
            current = getattr(self, name)
            if current is None:
                object.__setattr__(self, name, fill[name]())
            elif not isinstance(current, np.ndarray):
                dtype = {"type": np.int8, "ts": np.float64, "cost": np.float64}.get(name, object)
                if name in ("value", "propensity"):
                    object.__setattr__(self, name, _optional_floats(list(current)))
                else:
                    object.__setattr__(self, name, np.asarray(current, dtype=dtype))
        for name in self.COLUMNS:
            if len(getattr(self, name)) != n:
                raise ValidationError(f"events.{name}", f"has {len(getattr(self, name))} values but event_id has {n}")

    def __len__(self) -> int:
        return len(self.event_id)

    @classmethod
    def from_events(cls, events: Sequence[Event]) -> EventBatch:
        """Columns from validated :class:`Event` records."""
        return cls(
            event_id=np.array([e.event_id for e in events], dtype=object),
            type=np.array([int(e.type) for e in events], dtype=np.int8),
            user_id=np.array([e.user_id for e in events], dtype=object),
            ad_id=np.array([e.ad_id for e in events], dtype=object),
            ts=np.array([e.ts for e in events], dtype=np.float64),
            placement=np.array([e.placement for e in events], dtype=object),
            cost=np.array([e.cost for e in events], dtype=np.float64),
            request_id=np.array([e.request_id for e in events], dtype=object),
            value=_optional_floats([e.value for e in events]),
            propensity=_optional_floats([e.propensity for e in events]),
        )

    @classmethod
    def concat(cls, batches: Sequence[EventBatch]) -> EventBatch:
        return cls(**{c: np.concatenate([getattr(b, c) for b in batches]) for c in cls.COLUMNS})

    def take(self, index: npt.NDArray[np.intp] | slice) -> EventBatch:
        """The events at ``index`` (an index array, boolean mask or slice)."""
        return EventBatch(**{c: getattr(self, c)[index] for c in self.COLUMNS})

    def validate(self) -> EventBatch:
        """Check every column with vectorized tests; raise naming the first bad row and field."""

        def fail(name: str, bad: npt.NDArray[np.bool_], problem: str) -> None:
            row = int(np.flatnonzero(bad)[0])
            got = getattr(self, name)[row]
            raise ValidationError(f"events[{row}].{name}", f"{problem} (got {got!r})")

        for name in ("event_id", "user_id", "ad_id"):
            col = getattr(self, name)
            ok = np.fromiter(
                (isinstance(v, str) and 0 < len(v) <= MAX_ID_LENGTH and v == v.strip() for v in col),
                dtype=bool,
                count=len(col),
            )
            if not ok.all():
                fail(name, ~ok, f"must be a non-empty string of at most {MAX_ID_LENGTH} characters")
        known = np.isin(self.type, [int(t) for t in EventType])
        if not known.all():
            fail("type", ~known, "unknown event type code")
        if not np.isfinite(self.ts).all():
            fail("ts", ~np.isfinite(self.ts), "must be a finite number of seconds since the epoch")
        bad_cost = ~np.isfinite(self.cost) | (self.cost < 0)
        if bad_cost.any():
            fail("cost", bad_cost, "must be a finite number >= 0")
        if np.isinf(self.value).any():
            fail("value", np.isinf(self.value), "must be finite")
        p = self.propensity
        bad_p = ~np.isnan(p) & ((p <= 0) | (p > 1))
        if bad_p.any():
            fail("propensity", bad_p, "must be in (0, 1]")
        dup = _first_duplicate(self.event_id)
        if dup is not None:
            raise ValidationError(f"events[{dup}].event_id", f"{self.event_id[dup]!r} appears twice in one batch")
        return self

    def rows(self) -> list[tuple[Any, ...]]:
        """Row tuples in :attr:`COLUMNS` order, NaN turned into None, for DB-API ``executemany``."""
        value = self.value.astype(object)
        value[np.isnan(self.value)] = None
        prop = self.propensity.astype(object)
        prop[np.isnan(self.propensity)] = None
        return list(
            zip(
                self.event_id.tolist(),
                self.type.tolist(),
                self.user_id.tolist(),
                self.ad_id.tolist(),
                self.ts.tolist(),
                self.placement.tolist(),
                self.cost.tolist(),
                self.request_id.tolist(),
                value.tolist(),
                prop.tolist(),
                strict=True,
            )
        )


def _first_duplicate(ids: npt.NDArray[np.object_]) -> int | None:
    seen: set[object] = set()
    for i, v in enumerate(ids.tolist()):
        if v in seen:
            return i
        seen.add(v)
    return None
