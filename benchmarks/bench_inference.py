"""Inference throughput (stars/s) for Teff, log g and [Fe/H] from the 63 headline tokens, with accuracy, same run.

Rows, all on the same stars and the same CPU threads:
    * ours: a trained model folder (``--model``), else the compact default architecture (random weights: speed
      only), through `stellar_tasks.inference.predict_arrays` (tokenizer packing, one encoder pass per star, the
      three requests in one decoder pass, batches of ``--batch-size``);
    * published: ``StellarConfig.published()`` through the very same code path (random weights: its accuracy is
      the paper's, Leung & Bovy 2023, not measured here);
    * xgboost: ``Booster.inplace_predict`` on the same 63 features, trained here on the train split
      (``--xgb-trees`` rounds per target, the published baseline used 2000), its accuracy measured here.

Accuracy is ``mad_std(truth - prediction)`` on the test split (`stellar_tasks.metrics.score`), for the stars with
all three labels. Writes benchmarks/results/inference.csv.

    python benchmarks/bench_inference.py --dataset data/apogee-gaia-xp [--model pretrained/stellar-foundation-apogee-xp]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from datasets_builder import load_stats
from modeling_stellar import StarTokenizer, StellarConfig, StellarForObservationPrediction
from results_table import RESULTS_DIR, write_results
from stellar_tasks.inference import mask_to_inputs, predict_arrays
from stellar_tasks.inputs import HEADLINE_INPUTS, LABELS
from stellar_tasks.metrics import score
from stellar_tasks.training import DEFAULT_VOCABULARY

RESULTS = RESULTS_DIR / "inference.csv"
PUBLISHED_SCATTER = {"teff": 47.17, "logg": 0.11, "fe_h": 0.07}
"""Leung & Bovy 2023, headline inputs (architecture.md, "Published results"); their [M/H] stands for [Fe/H] here."""


def split_arrays(dataset: str, split: str, tokenizer: StarTokenizer) -> tuple[np.ndarray, np.ndarray]:
    """Standardised (values, errors) of one split, the inputs restricted to the 63 headline names."""
    from datasets import load_dataset

    table = load_dataset(dataset, split=split).with_format("numpy")[:]
    values, errors = tokenizer.to_arrays(table, ignore_unknown=True)
    labels = tokenizer.convert_names_to_ids(LABELS)
    shown = mask_to_inputs(tokenizer, values, HEADLINE_INPUTS)
    shown[:, labels] = values[:, labels]  # kept for the truth; predict_arrays hides requested names
    return shown, errors


def physical(tokenizer: StarTokenizer, values: np.ndarray, names: list[str]) -> np.ndarray:
    ids = np.array(tokenizer.convert_names_to_ids(names))
    return tokenizer.decode(np.broadcast_to(ids, (len(values), len(ids))), values[:, ids])[0]


def median_rate(run, n_stars: int, repeats: int) -> float:
    run()  # warm-up
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        timings.append(time.perf_counter() - start)
    return n_stars / sorted(timings)[len(timings) // 2]


def scatter(truth: np.ndarray, prediction: np.ndarray) -> dict[str, float]:
    return {name: score(truth[:, j], prediction[:, j])["scatter"] for j, name in enumerate(LABELS)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, help="dataset folder or Hub id (train and test splits)")
    parser.add_argument(
        "--model", default=None, help="trained model folder; default: compact architecture, random"
    )
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--stars", type=int, default=4096, help="test stars timed per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--xgb-trees", type=int, default=2000, help="boosting rounds (one tree per target each)"
    )
    parser.add_argument("--xgb-depth", type=int, default=6)
    args = parser.parse_args()

    if args.model:
        ours = StellarForObservationPrediction.from_pretrained(args.model).eval()
        tokenizer = StarTokenizer.from_pretrained(args.model)
    else:
        tokenizer = StarTokenizer.from_pretrained(str(DEFAULT_VOCABULARY))
        tokenizer.set_normalization(load_stats(args.dataset))
        torch.manual_seed(0)
        ours = StellarForObservationPrediction(StellarConfig(vocab_size=tokenizer.vocab_size)).eval()
    torch.manual_seed(0)
    published = StellarForObservationPrediction(
        StellarConfig.published(vocab_size=tokenizer.vocab_size)
    ).eval()

    test, test_errors = split_arrays(args.dataset, "test", tokenizer)
    truth = physical(tokenizer, test, LABELS)
    labelled = np.isfinite(truth).all(axis=1)
    test, test_errors, truth = test[labelled], test_errors[labelled], truth[labelled]
    timed = np.resize(np.arange(len(test)), args.stars)  # repeats test stars when the split is smaller
    feature_ids = tokenizer.convert_names_to_ids(HEADLINE_INPUTS)

    rows = []
    for name, model in (
        ("ours" if args.model else "ours (compact default, random weights)", ours),
        ("published architecture", published),
    ):

        def run(model=model):
            return predict_arrays(model, tokenizer, test[timed], test_errors[timed], LABELS, args.batch_size)

        rate = median_rate(run, args.stars, args.repeats)
        accuracy, source = {k: float("nan") for k in LABELS}, "not measured (random weights)"
        if model is ours and args.model:
            mean, _, _ = predict_arrays(model, tokenizer, test, test_errors, LABELS, args.batch_size)
            accuracy, source = scatter(truth, mean), "test split, this run"
        if model is published:
            accuracy, source = PUBLISHED_SCATTER, "paper (Leung & Bovy 2023)"
        rows.append(
            {
                "model": name,
                "size": f"{model.num_parameters()} parameters",
                "stars_per_s": rate,
                **accuracy,
                "accuracy": source,
            }
        )

    import xgboost

    train, _ = split_arrays(args.dataset, "train", tokenizer)
    train_truth = physical(tokenizer, train, LABELS)
    train = train[np.isfinite(train_truth).all(axis=1)]
    train_truth = train_truth[np.isfinite(train_truth).all(axis=1)]
    started = time.perf_counter()
    booster = xgboost.train(
        {"tree_method": "hist", "max_depth": args.xgb_depth, "eta": 0.05, "multi_strategy": "one_output_per_tree",
         "nthread": torch.get_num_threads()},
        xgboost.DMatrix(train[:, feature_ids].astype(np.float32), label=train_truth),
        num_boost_round=args.xgb_trees,
    )  # fmt: skip
    print(f"xgboost trained in {time.perf_counter() - started:.0f} s on {len(train)} stars")
    features = test[:, feature_ids].astype(np.float32)
    rate = median_rate(lambda: booster.inplace_predict(features[timed]), args.stars, args.repeats)
    accuracy = scatter(truth, booster.inplace_predict(features))
    rows.append({"model": "xgboost", "size": f"{args.xgb_trees} rounds x 3 targets, depth {args.xgb_depth}",
                 "stars_per_s": rate, **accuracy, "accuracy": "test split, this run"})  # fmt: skip

    published_rate, xgboost_rate = rows[1]["stars_per_s"], rows[2]["stars_per_s"]
    for row in rows:
        row["ratio_to_published"] = round(row["stars_per_s"] / published_rate, 2)
        row["ratio_to_xgboost"] = round(row["stars_per_s"] / xgboost_rate, 2)
        row["stars_per_s"] = round(row["stars_per_s"], 1)
        row.update({k: round(row[k], 4) for k in LABELS})
        row["threads"] = torch.get_num_threads()
        row["test_stars"] = len(test)
        print(row)
    write_results(RESULTS, rows)


if __name__ == "__main__":
    main()
