"""Per-star agreement of the front doors: the same star through the pipeline, ``stellar-foundation predict`` on a file
(its default, and ``--precision bfloat16``) and on a HATS catalogue with 2 Dask workers, against the pipeline's float32
answer, in units of the model's own sigma.

The stars are the test split's headline inputs (BP/RP 0-29 and the colours; read for this report, no choice rests on
them). Each row: the largest, 99th-percentile and median |answer - pipeline| / sigma over the stars, per label, and the
largest physical difference. Writes benchmarks/results/agreement.csv.

    python benchmarks/bench_agreement.py --dataset data/apogee-gaia-xp --model pretrained/stellar-foundation-apogee-xp
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from astropy.table import QTable, Table
from transformers import pipeline

from results_table import RESULTS_DIR, write_results
from stellar_tasks.cli import main as command
from stellar_tasks.hats import write_hats_catalogue
from stellar_tasks.inputs import HEADLINE_INPUTS, LABELS

RESULTS = RESULTS_DIR / "agreement.csv"


def significant(value: float) -> float:
    """``value`` to 3 significant figures (a difference of 1e-7 sigma is not rounded away to 0)."""
    return float(f"{value:.3g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, help="dataset folder")
    parser.add_argument("--model", required=True, help="model folder")
    args = parser.parse_args()

    stars = pa.concat_tables(
        pq.read_table(path, columns=["gaia_dr3_source_id", *HEADLINE_INPUTS])
        for path in sorted(Path(args.dataset).glob("data/test-*.parquet"))
    )
    answers = pipeline(model=args.model, trust_remote_code=True)(
        Table(stars.select(HEADLINE_INPUTS).to_pydict())
    )
    reference = {name: np.array([[a[name]["mean"], a[name]["std"]] for a in answers]) for name in LABELS}
    outputs = {}
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        table = folder / "stars.parquet"
        pq.write_table(stars, table)
        catalogue = write_hats_catalogue(stars.to_pandas(), folder / "stars_hats", "stars", 1000)
        runs = {
            "predict, file (default)": [table],
            "predict, file, --precision bfloat16": [table, "--precision", "bfloat16"],
            "predict, HATS, 2 workers (default)": [catalogue, "--workers", "2"],
        }
        for name, arguments in runs.items():
            output = folder / f"{len(outputs)}.parquet"
            if (
                command(["predict", *map(str, arguments), "--model", args.model, "--output", str(output)])
                != 0
            ):
                raise SystemExit(f"{name}: the command failed")
            predicted = QTable.read(output)
            order = np.argsort(np.asarray(predicted["gaia_dr3_source_id"]))  # HATS writes in HEALPix order
            back = order[np.argsort(np.argsort(stars.column("gaia_dr3_source_id").to_numpy()))]
            outputs[name] = {label: predicted[label].value[back] for label in LABELS}
    rows = []
    for name, predicted in outputs.items():
        for label in LABELS:
            difference = np.abs(predicted[label] - reference[label][:, 0])
            shift = difference / reference[label][:, 1]
            rows.append({
                "front door": name,
                "label": label,
                "stars": int(np.isfinite(shift).sum()),
                "max_shift_over_sigma": significant(np.nanmax(shift)),
                "p99_shift_over_sigma": significant(np.nanpercentile(shift, 99)),
                "median_shift_over_sigma": significant(np.nanmedian(shift)),
                "max_difference": significant(np.nanmax(difference)),
                "baseline": "pipeline(...) float32, same run",
            })  # fmt: skip
            print(rows[-1])
    write_results(RESULTS, rows)


if __name__ == "__main__":
    main()
