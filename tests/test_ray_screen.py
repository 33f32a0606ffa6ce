"""`counterfeit screen MANIFEST --ray`: on a local Ray instance, the same rows as the local path, row for row,
and no row lost when a worker dies mid-run."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from conftest import TINY_PHOTO_SETTINGS

ray = pytest.importorskip("ray", reason="the ray extra (ray[data]) is not installed: pip install '.[ray]'")
pytest.importorskip("ray.data", reason="the ray extra (ray[data]) is not installed: pip install '.[ray]'")

from evaluation.ray_screen import RayOptions, ScreenActor, screen_on_ray  # noqa: E402  (after the skip)

sys.path.insert(0, str(Path(__file__).parent))
from test_screen_manifest import assert_same_answers, read_output, write_csv  # noqa: E402

ROWS = 40


@pytest.fixture(scope="module")
def local_ray():
    """A small local Ray: 2 CPUs, a 100 MB object store, no dashboard. Its workers inherit the environment
    as it is now: the small photos' quality settings of the tests (as tests/test_screen_manifest.py)."""
    settings = {f"COUNTERFEIT_{name.upper()}": str(value) for name, value in TINY_PHOTO_SETTINGS.items()}
    before = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    ray.init(num_cpus=2, object_store_memory=100 * 1024 * 1024, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
    for name, value in before.items():
        if value is None:
            os.environ.pop(name)
        else:
            os.environ[name] = value


@pytest.fixture
def manifest(reference_data, tmp_path) -> Path:
    shutil.copytree(reference_data / "test", tmp_path / "photos")
    photos = sorted((tmp_path / "photos").rglob("*.jpg"))
    rows = [{"id": f"row-{i:03d}", "image": str(photos[i % len(photos)].relative_to(tmp_path))} for i in range(ROWS)]
    rows.append({"id": "gone", "image": "photos/none.jpg"})
    return write_csv(tmp_path / "listings.csv", rows)


@pytest.fixture
def local_rows(run_cli, manifest, model_path, tmp_path) -> list[dict]:
    code, _, _ = run_cli("screen", manifest, "--model", model_path, "--output", tmp_path / "local.jsonl")
    assert code == 0
    return read_output(tmp_path / "local.jsonl")


class DiesOnce(ScreenActor):
    """An actor whose process exits on its first batch, once per test (the marker file says it has)."""

    marker = ""  # set by the test; pickled with the class

    def __call__(self, batch):
        marker = Path(self.marker)
        if not marker.exists():
            marker.write_text("died")
            os._exit(1)  # the worker process dies: no exception, no cleanup
        return super().__call__(batch)


def test_ray_gives_the_local_rows(local_ray, manifest, model_path, local_rows, tmp_path):
    counts, skipped = screen_on_ray(manifest, model_path, tmp_path / "ray.parquet", None, RayOptions(workers=2))
    rows = read_output(tmp_path / "ray.parquet")
    assert skipped == 0 and sum(counts.values()) == ROWS + 1 and counts["error"] == 1
    assert_same_answers(rows, local_rows)
    counts, skipped = screen_on_ray(manifest, model_path, tmp_path / "ray.parquet", None, RayOptions(workers=2))
    assert (counts, skipped) == ({}, ROWS + 1) and len(read_output(tmp_path / "ray.parquet")) == ROWS + 1


def test_a_worker_dying_mid_run_loses_no_row(local_ray, manifest, model_path, local_rows, tmp_path, monkeypatch):
    from ray import cloudpickle  # the copy Ray pickles with

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module
    marker = tmp_path / "died"
    monkeypatch.setattr(DiesOnce, "marker", str(marker))
    screen_on_ray(manifest, model_path, tmp_path / "ray.parquet", None, RayOptions(workers=2), actor=DiesOnce)
    assert marker.exists()  # a worker did die
    rows = read_output(tmp_path / "ray.parquet")
    assert sorted(r["id"] for r in rows) == sorted(r["id"] for r in local_rows)  # each once
    assert_same_answers(rows, local_rows)
