"""CPU forward throughput (stars/s) of the compact default vs the published architecture, same run.

Each star brings the 63 published headline tokens (BP0-29, RP0-29, BP-RP, J-H, J-K) and asks for Teff,
log g and [Fe/H]; eval mode, no gradients, float32. Writes benchmarks/results/forward.csv.

    python benchmarks/bench_forward.py [--batch-size 1024] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time

import torch

from modeling_stellar import StellarConfig, StellarForObservationPrediction
from results_table import RESULTS_DIR, write_results

RESULTS = RESULTS_DIR / "forward.csv"
HEADLINE_TOKENS = 63
REQUESTS = 3


@torch.no_grad()
def stars_per_second(config: StellarConfig, batch_size: int, repeats: int) -> tuple[int, float]:
    torch.manual_seed(0)
    model = StellarForObservationPrediction(config).eval()
    input_ids = torch.arange(1, HEADLINE_TOKENS + 1).repeat(batch_size, 1)
    input_values = torch.randn(batch_size, HEADLINE_TOKENS)
    request_ids = torch.tensor([114, 115, 116]).repeat(batch_size, 1)
    model(input_ids=input_ids, input_values=input_values, request_ids=request_ids)  # warm-up
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(input_ids=input_ids, input_values=input_values, request_ids=request_ids)
        timings.append(time.perf_counter() - start)
    return model.num_parameters(), batch_size / sorted(timings)[len(timings) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rows = []
    for name, config in (("published", StellarConfig.published()), ("compact (default)", StellarConfig())):
        parameters, rate = stars_per_second(config, args.batch_size, args.repeats)
        rows.append({"model": name, "parameters": parameters, "stars_per_s": round(rate, 1)})
    baseline = rows[0]["stars_per_s"]
    for row in rows:
        row["ratio_to_published"] = round(row["stars_per_s"] / baseline, 2)
        row["threads"] = torch.get_num_threads()
        print(row)
    write_results(RESULTS, rows)


if __name__ == "__main__":
    main()
