"""Full reports side by side: every task's headline number from several ``stellar-foundation evaluate --full``
reports (their ``results.json``), with XGBoost's from the last one, so that a new model is read beside the old.

Numbers per task: parameters, the robust scatter of each label in each input setting (a-e, physical units);
spectra, the flux reduced chi-square of each generation / inpainting task; loci, the median |Delta Teff| [K] of each
branch against the data; extinction curve, the mean |deviation| from each published law. Lower is better for all.

    python benchmarks/compare_reports.py first=benchmarks/results/evaluation_full_v1 \
        second=benchmarks/results/evaluation_full_v2 shipped=benchmarks/results/evaluation_full

Writes benchmarks/results/report_comparison.csv (one row per number, one column per report, then ``xgboost``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from results_table import RESULTS_DIR, write_results


def headline_numbers(results: dict, method: str = "model") -> dict[str, float]:
    """``{"task: number": value}`` of one report's ``results.json`` for ``method`` ("model" or "xgboost"; loci and
    the extinction curve have no XGBoost number)."""
    numbers = {}
    for row in results["parameters"]:
        if row["method"] == method:
            numbers[f"parameters ({row['setting']}): {row['label']} scatter [{row['unit']}]"] = row["scatter"]
    for task in results["spectra"]:
        numbers[f"spectra: {task['task']} flux chi2"] = task[method]["flux"]["chi2_reduced"]
    if method == "model":
        for branch, summary in results["loci"]["branches"].items():
            numbers[f"loci: {branch} median |dTeff| [K]"] = summary["median_abs_delta_teff"]
        # Reports before 2026-12-06 took the colour excess of the median slope; their rows keep that name.
        statistic = results["extinction"].get("statistic", "normalised median slope")
        for law, summary in results["extinction"]["laws"].items():
            numbers[f"extinction curve ({statistic}): mean |deviation| from {law}"] = summary[
                "mean_abs_deviation"
            ]
            for kind, population in summary.get("populations", {}).items():
                numbers[f"extinction curve ({statistic}), {kind} only: from {law}"] = population[
                    "mean_abs_deviation"
                ]
    return numbers


def compare(reports: dict[str, Path]) -> list[dict]:
    """One row per number: its value in each report (``None`` where a report lacks it) and XGBoost's in the last."""
    loaded = {name: json.loads((folder / "results.json").read_text()) for name, folder in reports.items()}
    columns = {name: headline_numbers(results) for name, results in loaded.items()}
    baseline = headline_numbers(list(loaded.values())[-1], method="xgboost")
    keys = list(dict.fromkeys(key for numbers in columns.values() for key in numbers))
    return [
        {"number": key, **{name: columns[name].get(key) for name in reports}, "xgboost": baseline.get(key)}
        for key in keys
    ]


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("reports", nargs="+", metavar="NAME=FOLDER", help="report folders, oldest first")
    parser.add_argument("--output", default=RESULTS_DIR / "report_comparison.csv")
    args = parser.parse_args(argv)
    reports = {}
    for item in args.reports:
        name, separator, folder = item.partition("=")
        if not separator or not (Path(folder) / "results.json").is_file():
            parser.error(f"{item!r}: expected NAME=FOLDER with FOLDER/results.json")
        reports[name] = Path(folder)
    return write_results(args.output, compare(reports))


if __name__ == "__main__":
    print(main())
