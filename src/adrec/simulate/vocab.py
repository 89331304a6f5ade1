"""The fixed vocabularies of the simulated market: categories, places, devices, names and creative templates.

Everything here is data, not randomness: the simulator draws *indices* into these tables, so the ground truth
saved next to a database stays small (integers) and the readable strings are rebuilt from the same tables.
Changing a table changes what a saved market means; bump :data:`VOCAB_VERSION` when you do.
"""

from __future__ import annotations

from dataclasses import dataclass

from adrec.data.schema import Device, Gender, PricingModel

__all__ = [
    "BODY_TEMPLATES",
    "CATEGORIES",
    "CITIES",
    "CTAS",
    "DEVICES",
    "DEVICE_WEIGHTS",
    "GENDERS",
    "GENDER_WEIGHTS",
    "GENERIC_ADJECTIVES",
    "NAME_PREFIXES",
    "NAME_SUFFIXES",
    "PRICING_MODELS",
    "REGIONS",
    "TITLE_TEMPLATES",
    "VOCAB_VERSION",
    "CategoryInfo",
    "City",
    "advertiser_name",
]

VOCAB_VERSION = 1


@dataclass(frozen=True)
class CategoryInfo:
    """One ad category and how the population relates to it.

    Attributes
    ----------
    name
        The readable tag stored on ads and used in targeting rules.
    weight
        Base share of interest and of ad supply (relative, not normalised).
    female_tilt
        Gender skew of the interest prior: its log is shifted by ``+female_tilt / 2`` for female users and
        ``-female_tilt / 2`` for male users (negative: male-skewed).
    age_peak
        Age at which interest in the category peaks; the log prior falls by ``log(age / age_peak)^2 / 0.5``.
    price_median
        Median advertised price; prices are lognormal around it.
    nouns, adjectives
        Words for the generated creative text.
    value_ratio
        Share of the price a conversion is worth: 1 for a purchase, small for a lead on a big-ticket item
        (a test drive booked, a viewing arranged).
    """

    name: str
    weight: float
    female_tilt: float
    age_peak: float
    price_median: float
    nouns: tuple[str, ...]
    adjectives: tuple[str, ...]
    value_ratio: float = 1.0


CATEGORIES: tuple[CategoryInfo, ...] = (
    CategoryInfo("cosmetics", 1.0, 1.2, 28, 25.0,
                 ("lipstick", "serum", "foundation", "moisturiser", "eyeshadow palette"),
                 ("radiant", "vegan", "long-lasting", "hydrating")),
    CategoryInfo("fashion", 1.2, 0.6, 27, 60.0,
                 ("sneakers", "jacket", "summer dress", "handbag", "denim jeans"),
                 ("stylish", "sustainable", "classic", "bold")),
    CategoryInfo("electronics", 1.1, -0.6, 33, 350.0,
                 ("headphones", "laptop", "smartwatch", "speaker", "camera"),
                 ("wireless", "ultra-fast", "compact", "smart")),
    CategoryInfo("gaming", 0.9, -0.9, 22, 50.0,
                 ("game", "controller", "gaming headset", "console", "gaming chair"),
                 ("epic", "immersive", "competitive", "next-gen")),
    CategoryInfo("travel", 0.9, 0.1, 40, 600.0,
                 ("city break", "beach holiday", "flight", "hotel stay", "cruise"),
                 ("unforgettable", "all-inclusive", "last-minute", "luxury")),
    CategoryInfo("finance", 0.6, -0.3, 42, 50.0,
                 ("credit card", "savings account", "investment app", "personal loan"),
                 ("secure", "low-fee", "flexible", "rewarding")),
    CategoryInfo("insurance", 0.5, 0.0, 48, 40.0,
                 ("car insurance", "home insurance", "travel insurance", "life cover"),
                 ("affordable", "comprehensive", "trusted", "simple")),
    CategoryInfo("automotive", 0.6, -0.8, 45, 28000.0,
                 ("SUV", "hybrid car", "electric car", "car service"),
                 ("efficient", "powerful", "reliable", "spacious"), value_ratio=0.02),
    CategoryInfo("home", 0.8, 0.4, 45, 120.0,
                 ("sofa", "floor lamp", "bedding set", "rug", "cookware set"),
                 ("cosy", "modern", "handmade", "minimalist")),
    CategoryInfo("groceries", 1.0, 0.3, 38, 30.0,
                 ("meal kit", "organic veg box", "coffee subscription", "snack box"),
                 ("fresh", "organic", "local", "delicious")),
    CategoryInfo("fitness", 0.8, 0.0, 30, 40.0,
                 ("gym membership", "yoga mat", "running shoe", "protein powder"),
                 ("energising", "pro-grade", "lightweight", "breathable")),
    CategoryInfo("health", 0.6, 0.4, 50, 30.0,
                 ("multivitamin", "sleep aid", "health check", "supplement"),
                 ("natural", "clinically tested", "gentle", "daily")),
    CategoryInfo("education", 0.6, 0.2, 24, 200.0,
                 ("online course", "language app", "coding bootcamp", "degree programme"),
                 ("flexible", "certified", "interactive", "expert-led")),
    CategoryInfo("jobs", 0.5, 0.0, 29, 20.0,
                 ("remote job", "graduate role", "nursing job", "delivery driver job"),
                 ("well-paid", "remote-friendly", "flexible", "entry-level")),
    CategoryInfo("real_estate", 0.4, 0.0, 40, 350000.0,
                 ("apartment", "family home", "studio flat", "new-build house"),
                 ("bright", "spacious", "central", "affordable"), value_ratio=0.002),
    CategoryInfo("pets", 0.6, 0.4, 38, 35.0,
                 ("dog food", "cat toy", "pet bed", "aquarium kit"),
                 ("healthy", "durable", "playful", "vet-approved")),
    CategoryInfo("baby", 0.4, 0.9, 31, 45.0,
                 ("stroller", "baby monitor", "nappy bundle", "car seat"),
                 ("safe", "soft", "award-winning", "eco-friendly")),
    CategoryInfo("books", 0.5, 0.4, 45, 15.0,
                 ("novel", "audiobook", "cookbook", "e-reader"),
                 ("bestselling", "gripping", "illustrated", "brand-new")),
    CategoryInfo("music", 0.6, -0.1, 25, 12.0,
                 ("streaming plan", "concert ticket", "acoustic guitar", "vinyl record"),
                 ("live", "ad-free", "acoustic", "limited-edition")),
    CategoryInfo("food_delivery", 0.9, 0.1, 27, 25.0,
                 ("pizza", "sushi platter", "burger meal", "vegan bowl"),
                 ("piping hot", "speedy", "tasty", "free-delivery")),
)  # fmt: skip


@dataclass(frozen=True)
class City:
    """A city users live in: its region, language, tier (1 = largest) and share of the population."""

    name: str
    region: str
    language: str
    tier: int
    weight: float


CITIES: tuple[City, ...] = (
    City("New York", "us-east", "en", 1, 8.0),
    City("Boston", "us-east", "en", 2, 2.5),
    City("Pittsburgh", "us-east", "en", 3, 1.5),
    City("Springfield", "us-east", "en", 5, 1.0),
    City("Los Angeles", "us-west", "en", 1, 6.0),
    City("Seattle", "us-west", "en", 2, 2.5),
    City("Boise", "us-west", "en", 4, 1.0),
    City("London", "uk", "en", 1, 5.0),
    City("Manchester", "uk", "en", 2, 2.0),
    City("Leeds", "uk", "en", 3, 1.5),
    City("Berlin", "de", "de", 1, 3.5),
    City("Munich", "de", "de", 2, 2.0),
    City("Leipzig", "de", "de", 3, 1.0),
    City("Paris", "fr", "fr", 1, 4.0),
    City("Lyon", "fr", "fr", 2, 1.5),
    City("Lille", "fr", "fr", 3, 1.0),
    City("Madrid", "es", "es", 1, 3.0),
    City("Valencia", "es", "es", 2, 1.2),
    City("São Paulo", "br", "pt", 1, 5.0),
    City("Recife", "br", "pt", 3, 1.5),
    City("Tokyo", "jp", "ja", 1, 5.0),
    City("Osaka", "jp", "ja", 2, 2.0),
    City("Mumbai", "in", "hi", 1, 5.0),
    City("Pune", "in", "hi", 2, 2.0),
    City("Jaipur", "in", "hi", 3, 1.5),
)

REGIONS: tuple[str, ...] = tuple(dict.fromkeys(c.region for c in CITIES))

GENDERS: tuple[Gender, ...] = (Gender.FEMALE, Gender.MALE, Gender.OTHER, Gender.UNKNOWN)
GENDER_WEIGHTS: tuple[float, ...] = (0.48, 0.47, 0.02, 0.03)

DEVICES: tuple[Device, ...] = (Device.MOBILE, Device.DESKTOP, Device.TABLET, Device.TV)
DEVICE_WEIGHTS: tuple[float, ...] = (0.62, 0.28, 0.07, 0.03)

PRICING_MODELS: tuple[PricingModel, ...] = (PricingModel.CPC, PricingModel.CPM, PricingModel.CPA)

NAME_PREFIXES: tuple[str, ...] = (
    "Nova", "Blue", "Peak", "Urban", "Green", "Bright", "Silver", "Swift", "Lumen", "Terra",
    "Aero", "Vita", "Pure", "Bold", "Zen", "Atlas", "Echo", "Maple", "Orbit", "Coral",
    "Polar", "Solar", "Iron", "Velvet", "Nimbus", "Crimson", "Harbor", "Pixel", "Quantum", "Willow",
)  # fmt: skip
NAME_SUFFIXES: tuple[str, ...] = (
    "Labs", "Co", "Works", "Goods", "Studio", "Market", "House", "Supply", "Collective", "Group",
    "Brands", "Trading", "Outfitters", "Foods", "Tech", "Living", "Wear", "Motors", "Partners", "Travel",
)  # fmt: skip


def advertiser_name(code: int) -> str:
    """The readable name behind a name code (``prefix x suffix``, numbered once the combinations run out)."""
    n_pre, n_suf = len(NAME_PREFIXES), len(NAME_SUFFIXES)
    base = f"{NAME_PREFIXES[code % n_pre]} {NAME_SUFFIXES[(code // n_pre) % n_suf]}"
    round_ = code // (n_pre * n_suf)
    return base if round_ == 0 else f"{base} {round_ + 1}"


GENERIC_ADJECTIVES: tuple[str, ...] = ("new", "best-selling", "premium", "exclusive", "award-winning")

# Placeholders: {brand} {noun} {adj} {adj2} {pct}; bodies also {price} and {cta}.
TITLE_TEMPLATES: tuple[str, ...] = (
    "{adj} {noun} from {brand}",
    "{brand} {noun}: {adj} and {adj2}",
    "Save {pct}% on the {adj} {noun}",
    "Meet the {adj} {noun} by {brand}",
    "{brand}: the {noun} you'll love",
    "Your next {noun} is here",
)
BODY_TEMPLATES: tuple[str, ...] = (
    "Discover the {adj} {noun} from {brand}. {price} {cta}",
    "Looking for a {adj} {noun}? {brand} has you covered. {price} {cta}",
    "{brand}'s {noun} is {adj} and {adj2}. {price} {cta}",
    "Thousands already love their {adj} {noun}. Join them with {brand}. {price} {cta}",
    "A {adj2}, {adj} {noun}, made for you by {brand}. {price} {cta}",
)
CTAS: tuple[str, ...] = (
    "Shop now.",
    "Learn more.",
    "Sign up today.",
    "Order today.",
    "Book now.",
    "Get a quote.",
)
