"""Settings: defaults < TOML file < ADREC_* environment < explicit overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from adrec.config import Settings
from adrec.exceptions import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_example_config_lists_every_setting_with_its_default() -> None:
    import tomllib

    text = (REPO / "config" / "adrec.example.toml").read_text()
    example = tomllib.loads(text)
    defaults = Settings.model_construct()
    # TOML has no null: settings unset by default are shown commented out, with an example value.
    unset = {name for name in Settings.model_fields if getattr(defaults, name) is None}
    assert all(f"\n# {name} = " in text for name in unset)
    assert set(example) == set(Settings.model_fields) - unset
    for key, value in example.items():
        got = getattr(defaults, key)
        assert (str(got) if isinstance(got, Path) else got) == value, key


def test_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "a.toml"
    cfg.write_text('seed = 5\ndb_url = "sqlite:///file.db"\n')
    assert Settings.load(cfg).seed == 5
    monkeypatch.setenv("ADREC_SEED", "9")
    loaded = Settings.load(cfg)
    assert loaded.seed == 9 and loaded.db_url == "sqlite:///file.db"
    assert Settings.load(cfg, seed=11).seed == 11


@pytest.mark.parametrize(
    ("text", "match"),
    [("seed = 'many'", "seed"), ("unknown_key = 1", "unknown_key"), ("seed = ", "a.toml")],
)
def test_bad_config_files_are_reported(tmp_path: Path, text: str, match: str) -> None:
    cfg = tmp_path / "a.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=match):
        Settings.load(cfg)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        Settings.load(tmp_path / "nope.toml")


def test_the_pipeline_knobs_of_the_settings_default_to_the_pipelines_own() -> None:
    # Settings sits below serving, so it cannot import PipelineConfig's defaults: they are written twice, and this
    # keeps the two copies equal.
    from adrec.serving.pipeline import PipelineConfig

    assert PipelineConfig.from_settings(Settings()) == PipelineConfig()
