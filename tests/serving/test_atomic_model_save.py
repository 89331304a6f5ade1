"""Model folders are written atomically: a save killed half-way leaves the previous model serving, and a reader never
picks a half-written folder (issue: ``find_model_dir`` took the newest folder with ``ids.json``, which was written
before the arrays)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from serving_helpers import blocks_interactions

from adrec.models.artifact import Artifact
from adrec.models.popularity import Popularity
from adrec.serving.pipeline import ServingModel, find_model_dir

HERE = Path(__file__).parent


def _save(path: Path) -> Path:
    data = blocks_interactions()
    return Artifact.create(Popularity().fit(data), data).save(path)


def test_a_save_killed_half_way_leaves_the_previous_model_serving(tmp_path: Path) -> None:
    models = tmp_path / "models"
    _save(models / "v1")
    # A second process starts saving v2 and is killed (SIGKILL) right after writing ids.json, before seen.npz: the
    # point where the old save had a folder that looked complete.
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path.insert(0, {str(HERE)!r})
        import numpy as np
        from serving_helpers import blocks_interactions
        from adrec.models.artifact import Artifact
        from adrec.models.popularity import Popularity
        real = np.savez
        def dying(file, *a, **kw):
            if str(file).endswith("seen.npz"):
                os.kill(os.getpid(), signal.SIGKILL)
            return real(file, *a, **kw)
        np.savez = dying
        data = blocks_interactions()
        Artifact.create(Popularity().fit(data), data).save({str(models / "v2")!r})
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    left = sorted(p.name for p in models.iterdir())
    assert "v1" in left
    assert any(name.startswith(".v2.partial-") for name in left)  # the dead save's debris, hidden
    assert not (models / "v2").exists()
    assert find_model_dir(models) == models / "v1"
    assert ServingModel.load(models).version == "v1"


def test_resaving_a_folder_replaces_it_whole(tmp_path: Path) -> None:
    first = _save(tmp_path / "m")
    stamp = (first / "ids.json").stat().st_mtime_ns
    os.utime(first / "ids.json", ns=(stamp - 10**9, stamp - 10**9))
    again = _save(tmp_path / "m")
    assert again == first and (again / "seen.npz").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no partial or old folder left
    assert find_model_dir(tmp_path) == tmp_path / "m"
