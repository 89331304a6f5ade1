"""Similar-ads search and near-duplicate groups on vectors with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from adrec.catalog import ContentIndex, TfidfEncoder, deduplicate, near_duplicate_groups
from adrec.exceptions import NotFoundError, ValidationError


def vectors() -> np.ndarray:
    # 0 and 2 identical; 3 within cos 0.995 of 0; 1 and 4 unrelated to them and to each other.
    v = np.array(
        [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [2.0, 0.0, 0.0], [1.0, 0.1, 0.0], [0.0, 0.0, 1.0]], dtype=np.float32
    )
    return v


def test_groups_are_the_connected_components_above_the_threshold() -> None:
    groups = near_duplicate_groups(vectors(), 0.99)
    assert [g.tolist() for g in groups] == [[0, 2, 3]]
    assert [g.tolist() for g in near_duplicate_groups(vectors(), 0.999999)] == [[0, 2]]
    assert near_duplicate_groups(vectors(), 1.0)[0].tolist() == [0, 2]


def test_groups_are_transitive_across_blocks() -> None:
    # a chain a-b-c where a and c are below the threshold: one group
    angles = np.radians([0.0, 8.0, 16.0, 90.0])
    v = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    assert [g.tolist() for g in near_duplicate_groups(v, np.cos(np.radians(10)))] == [[0, 1, 2]]


def test_deduplicate_keeps_the_first_of_each_group() -> None:
    ids = ["a", "b", "c", "d", "e"]
    kept, merged = deduplicate(ids, vectors(), 0.99)
    assert kept == ["a", "b", "e"]
    assert merged == [["a", "c", "d"]]
    with pytest.raises(ValidationError, match="threshold"):
        deduplicate(ids, vectors(), 1.5)
    with pytest.raises(ValidationError, match="5 rows for 4 ids"):
        deduplicate(ids[:4], vectors(), 0.9)


def test_similar_ads_by_id_and_by_vector() -> None:
    index = ContentIndex(["a", "b", "c", "d", "e"], vectors())
    top = index.similar("a", k=2)
    assert [s.ad_id for s in top] == ["c", "d"]
    assert top[0].similarity == pytest.approx(1.0)
    assert [s.ad_id for s in index.similar([0.0, 0.0, 3.0], k=1)] == ["e"]
    assert [s.ad_id for s in index.similar("a", k=10, min_similarity=0.5)] == ["c", "d"]
    assert index.near_duplicates(0.99) == [["a", "c", "d"]]
    with pytest.raises(NotFoundError):
        index.similar("zz")
    with pytest.raises(ValidationError, match="dimensions"):
        index.similar([1.0, 0.0])


def test_text_near_duplicates_found_through_tfidf() -> None:
    texts = [
        "Summer sale: red running shoes, 20% off",
        "Summer sale: red running shoes 20% off!",
        "Cheap car insurance, get a quote today",
        "Lipstick and mascara for every day",
    ]
    enc = TfidfEncoder().fit(texts)
    kept, merged = deduplicate(["s1", "s2", "car", "lip"], enc.encode(texts), 0.95)
    assert kept == ["s1", "car", "lip"]
    assert merged == [["s1", "s2"]]
