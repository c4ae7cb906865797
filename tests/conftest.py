"""Shared fixtures.

``synth_root``: a small synthetic GTSRB (official layout, ``GTSRB/`` level entered, train and
test) written once per test session; reuse it in any test that needs data on disk.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


# Kept small so that the whole session pays about a second for it: 43 classes x 2 tracks x 5.
SYNTH_PER_CLASS = 10
SYNTH_PER_TRACK = 5
SYNTH_TEST = 86
SYNTH_SIZES = (15, 80)


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of a synthetic GTSRB root: ``Final_Training/Images/000NN/`` (43 classes x 2 tracks
    x 5 images, 15..80 px, with GT-000NN.csv), ``Final_Test/Images/`` (86 images) and
    ``GT-final_test.csv``. Treat it as read-only (copy it to modify)."""
    from neonsign.synth import synthesize

    root = tmp_path_factory.mktemp("synth_gtsrb")
    return synthesize(
        root,
        n_per_class=SYNTH_PER_CLASS,
        images_per_track=SYNTH_PER_TRACK,
        seed=1234,
        size_range=SYNTH_SIZES,
        n_test=SYNTH_TEST,
    )


@pytest.fixture
def synth(synth_root: Path) -> Path:
    """The session's synthetic GTSRB root (:func:`synth_root`) as a Path."""
    return Path(synth_root)


def real_gtsrb_root() -> Path | None:
    """The real training split: $GTSRB_ROOT, else ../shared/gtsrb beside the repository."""
    import os

    env = os.environ.get("GTSRB_ROOT")
    candidates = [Path(env)] if env else []
    candidates.append(REPO_ROOT.parent / "shared" / "gtsrb")
    for c in candidates:
        if c.is_dir():
            return c
    return None


@pytest.fixture(scope="session", autouse=True)
def _registry_in_tmp(tmp_path_factory: pytest.TempPathFactory) -> None:
    """MLflow tracking/registry default (neonsign.app.registry.default_uri) in a temporary directory,
    so no test writes ./registry (training tracks to MLflow whenever mlflow is installed)."""
    import os

    if "MLFLOW_TRACKING_URI" not in os.environ:
        os.environ["NEONSIGN_REGISTRY"] = str(tmp_path_factory.mktemp("registry_default"))
