"""``open_store(url, create=False)``: readers refuse a store that does not exist, and create nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from adrec.exceptions import StoreError
from adrec.store import open_store


def test_a_missing_store_is_refused_then_opened_once_created(store_url: str) -> None:
    with pytest.raises(StoreError, match=r"no adrec store at .*adrec (simulate|import|serve --create)"):
        open_store(store_url, create=False)
    with open_store(store_url) as store:  # the default creates it
        version = store.schema_version()
    with open_store(store_url, create=False) as store:
        assert store.schema_version() == version and store.stats().users == 0


def test_a_missing_sqlite_file_and_its_folder_are_not_created(tmp_path: Path) -> None:
    path = tmp_path / "not" / "here" / "x.db"
    with pytest.raises(StoreError, match=str(path)):
        open_store(f"sqlite:///{path}", create=False)
    assert not (tmp_path / "not").exists()


def test_an_empty_sqlite_file_is_not_a_store(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    with pytest.raises(StoreError, match="no adrec schema"):
        open_store(f"sqlite:///{path}", create=False)


@pytest.mark.integration
def test_the_message_hides_a_postgres_password(postgres_server: str) -> None:
    from sqlalchemy.engine import make_url

    url = make_url(postgres_server).set(password="hunter2secret").render_as_string(hide_password=False)
    with pytest.raises(StoreError) as err:
        open_store(f"{url}?options=-csearch_path%3Dadrec_no_such_schema", create=False)
    assert "hunter2secret" not in str(err.value) and "***" in str(err.value)
