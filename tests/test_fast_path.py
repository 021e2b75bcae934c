"""The fast CPU path (``--precision bfloat16``: a bfloat16 copy of the model) keeps the shipped model's accuracy: the
Teff, log g and [Fe/H] scatter on the test split stays within 2 % of the float32 path's (which is the pipeline's,
`tests/test_cli.py`).

The tiny dataset's test split has 165 stars, too few to tell a 2 % change of the scatter from its sampling noise;
so the guard is per star: the robust scatter of the bfloat16 - float32 differences is at most 0.2 of the float32
residual scatter, which, added in quadrature, raises that scatter by at most ``sqrt(1 + 0.2**2) - 1`` = 2 %. (On the
real test split, 3,985 stars, the measured scatter changes are below 0.5 % for the d64 and d96 models.)
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from astropy.stats import mad_std
from astropy.table import QTable

from modeling_stellar import StellarForObservationPrediction
from stellar_tasks.catalogue import model_precision, native_bfloat16
from stellar_tasks.cli import main
from stellar_tasks.inputs import LABELS
from tests.conftest import REPO_ROOT

MODEL = REPO_ROOT / "pretrained" / "stellar-foundation-apogee-xp"
SCATTER_TOLERANCE = 0.02
"""bfloat16's scatter may differ from float32's by 2 % of it (issue 14's accuracy guard)."""
DIFFERENCE_TOLERANCE = float(np.sqrt((1 + SCATTER_TOLERANCE) ** 2 - 1))
"""Largest robust scatter of the per-star bfloat16 - float32 differences, as a fraction of the float32 residual
scatter, that keeps the scatter within `SCATTER_TOLERANCE` when added in quadrature (0.2)."""


def test_bfloat16_keeps_the_test_split_scatter_within_2_percent(tiny_dataset, tmp_path):
    table = pa.concat_tables(pq.read_table(path) for path in sorted(tiny_dataset.glob("data/test-*.parquet")))
    stars = tmp_path / "test.parquet"
    pq.write_table(table, stars)
    predictions = {}
    for precision in ("float32", "bfloat16"):
        output = tmp_path / f"{precision}.parquet"
        assert main(["predict", str(stars), "--model", str(MODEL), "--output", str(output),
                     "--requests", *LABELS, "--precision", precision]) == 0  # fmt: skip
        predictions[precision] = QTable.read(output)
        np.testing.assert_array_equal(
            predictions[precision]["gaia_dr3_source_id"], table.column("gaia_dr3_source_id")
        )
    for name in LABELS:
        truth = table.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
        fast, exact = predictions["bfloat16"][name].value, predictions["float32"][name].value
        known = np.isfinite(truth) & np.isfinite(exact)
        assert np.isfinite(fast[known]).all(), name
        scatter = mad_std(truth[known] - exact[known])
        difference = mad_std(fast[known] - exact[known])
        assert difference <= DIFFERENCE_TOLERANCE * scatter, (name, difference, scatter)
        assert difference > 0, name  # it did run in bf16


def test_bfloat16_runs_a_copy_and_leaves_the_model_as_it_is():
    model = StellarForObservationPrediction.from_pretrained(MODEL)
    fast = model_precision(model, "bfloat16")
    assert fast is not model and fast.dtype == torch.bfloat16 and model.dtype == torch.float32
    assert model_precision(model, "float32") is model


def test_the_default_is_bfloat16_where_the_cpu_multiplies_in_it():
    # the command's default, "auto": this CPU (AMX / AVX-512-BF16) gets the guarded bfloat16 copy above
    model = StellarForObservationPrediction.from_pretrained(MODEL)
    native = native_bfloat16(torch.device("cpu"))
    assert model_precision(model, "auto").dtype == (torch.bfloat16 if native else torch.float32)
    assert native_bfloat16(torch.device("meta")) is False


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision must be one of float32, bfloat16"):
        model_precision(torch.nn.Linear(1, 1), "int8")
