"""Issue 28's breaks ("Evidence that can fail"), applied without editing the code: what each guard test must catch.

An outside audit broke the code in a private copy the way each test is meant to catch, and some breaks passed the
suite. Each break here is one of those changes, made by replacing one function for the duration of a ``with`` block
(in this process), or of one command (``python -m tests.guard_breaks BREAK COMMAND ARGUMENTS...``: the guards that
run the command in a subprocess). The guard's own test file runs the guard's scenario with the break and asserts that
the guard's checks fail there, so that a guard that stops looking is noticed:

* `output_written_after_each_chunk`: ``predict`` writes ``--output`` in place after every chunk
  (``tests/test_guards.py``);
* `resume_ignoring_the_checkpoint`: ``train --resume`` loads nothing and trains again from step 0
  (``tests/test_train.py``);
* `finished_partitions_recomputed`: a resumed HATS run says "resuming: N of M" but predicts every partition again
  (``tests/test_hats.py``).
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from unittest.mock import patch


@contextmanager
def output_written_after_each_chunk(output: Path) -> Iterator[None]:
    """``predict`` that writes ``output`` in place (no temporary name) after every chunk, with the rows predicted so
    far, and once more in place at the end: a whole run writes the same table as today, but a run stopped by a bad
    file after the first chunks leaves a partial ``output`` behind."""
    from astropy.table import vstack

    from stellar_tasks import cli

    predicted = []
    predict_chunk = cli.predict_chunk

    def predict_and_write(*args, **kwargs):
        part = predict_chunk(*args, **kwargs)
        predicted.append(part)
        so_far = vstack(predicted, metadata_conflicts="silent")
        so_far.meta.clear()  # the chunks' counts of rows served, which the command pops from each chunk later
        so_far.write(output, overwrite=True)
        return part

    def write_in_place(table, path, overwrite: bool = False) -> Path:
        table.write(path, overwrite=True)
        return Path(path)

    with (
        patch.object(cli, "predict_chunk", predict_and_write),
        patch.object(cli, "write_table", write_in_place),
    ):
        yield


@contextmanager
def resume_ignoring_the_checkpoint() -> Iterator[None]:
    """``train --resume`` that loads no checkpoint and starts again from step 0 (`stellar_tasks.training.resume`
    returns 0): a deterministic run then logs the same losses and saves the same weights as one that resumed."""
    from stellar_tasks import training

    with patch.object(training, "resume", lambda accelerator, output: 0):
        yield


@contextmanager
def finished_partitions_recomputed() -> Iterator[None]:
    """A resumed HATS run that counts the partitions a killed run wrote (and says so: "resuming: N of M"), then drops
    lsdb's done markers and count histograms of them, so that every partition is predicted and written again."""
    from lsdb.io.to_hats import DONE_DIR_NAME, HISTOGRAM_DIR_NAME

    from stellar_tasks import hats

    clear_unfinished_partitions = hats._clear_unfinished_partitions

    def count_then_forget(written: Path) -> int:
        done = clear_unfinished_partitions(written)
        for name in (DONE_DIR_NAME, HISTOGRAM_DIR_NAME):
            shutil.rmtree(written / name, ignore_errors=True)
        return done

    with patch.object(hats, "_clear_unfinished_partitions", count_then_forget):
        yield


SUBPROCESS_BREAKS: dict[str, Callable[[], AbstractContextManager[None]]] = {
    "resume_ignoring_the_checkpoint": resume_ignoring_the_checkpoint,
    "finished_partitions_recomputed": finished_partitions_recomputed,
}
"""The breaks a command line can apply (`main`), by name."""


def main(argv: list[str]) -> int:
    """``python -m tests.guard_breaks BREAK COMMAND ARGUMENTS...``: ``stellar-foundation COMMAND ARGUMENTS...``
    (`stellar_tasks.cli.main`; ``train`` takes ``train.py``'s arguments) with the break ``BREAK`` applied; its exit
    status."""
    from stellar_tasks.cli import main as command

    name, *arguments = argv
    with SUBPROCESS_BREAKS[name]():
        return command(arguments)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
