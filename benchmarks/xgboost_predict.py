"""XGBoost as a whole command, for `bench_catalogue.py`'s ``xgboost whole process`` row: load a saved booster, read
a Parquet table's 63 headline columns, predict Teff, log g and [Fe/H], write them to Parquet.

    python benchmarks/xgboost_predict.py BOOSTER.ubj TABLE.parquet OUT.parquet
"""

from __future__ import annotations

import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xgboost

from stellar_tasks.inputs import HEADLINE_INPUTS, LABELS


def main(booster_path: str, table_path: str, output_path: str) -> None:
    booster = xgboost.Booster(model_file=booster_path)
    rows = pq.read_table(table_path, columns=list(HEADLINE_INPUTS))
    features = np.column_stack([rows.column(name).to_numpy(zero_copy_only=False) for name in HEADLINE_INPUTS])
    predicted = booster.inplace_predict(features.astype(np.float32))  # (n, 3)
    pq.write_table(pa.table({name: predicted[:, j] for j, name in enumerate(LABELS)}), output_path)


if __name__ == "__main__":
    main(*sys.argv[1:])
