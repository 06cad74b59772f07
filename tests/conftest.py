"""Shared test setup: tests run on CPU with tiny configs; real data comes from ../shared beside the repo."""

import os
from pathlib import Path

import pytest

# Session fixtures of the end-to-end pre-training runs: cache_dir, uninterrupted_workdir, uninterrupted.
from pretrain_runs import cache_dir, uninterrupted, uninterrupted_workdir  # noqa: F401

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ELECTRA_SHARED_DIR", REPO.parent / "shared"))


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: longer runs (deselect with -m 'not slow')")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.exists():
        pytest.skip(f"the shared data folder {SHARED} is absent (set ELECTRA_SHARED_DIR)")
    return SHARED


@pytest.fixture
def mini_config():
    """Loads configs/pretrain.py:tiny with the mini network of tests/mini.py and the given dotted overrides."""
    import mini

    return mini.config


@pytest.fixture(scope="session")
def uncased_vocab(shared_dir) -> Path:
    return shared_dir / "data" / "bert_vocab" / "uncased" / "vocab.txt"
