"""Publishing a dataset folder to the Hub, against the offline stand-in in `hub_server`.

The push runs in this process with ``huggingface_hub.constants`` pointed at the stand-in; the read-back
runs ``datasets.load_dataset(repo_id)`` in a fresh process with ``HF_ENDPOINT`` set before import and an
empty ``HF_HOME``, as a user on another machine would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hub_server import HubServer

from datasets_builder.publish import publish, validate_dataset_folder

TOKEN = "hf_stand_in_token"
REPO = "stellar/apogee-gaia-xp-tiny"

CARD = """\
---
license: cc-by-sa-4.0
configs:
- config_name: default
  data_files:
  - split: train
    path: data/train/*.parquet
  - split: test
    path: data/test/*.parquet
---
# A tiny stellar dataset
"""


def _shard(seed: int, n: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    teff = rng.normal(4800, 500, n).astype(np.float32)
    teff[0] = np.nan  # not observed
    return pa.table(
        {
            "gaia_dr3_source_id": pa.array(rng.integers(1, 2**62, n), pa.int64()),
            "apogee_id": pa.array([f"2M{seed:02d}{i:06d}" for i in range(n)]),
            "teff": pa.array(teff, pa.float32()),
            "teff_err": pa.array(np.full(n, 50.0, np.float32)),
            "bp0": pa.array(rng.normal(0.3, 0.1, n).astype(np.float32)),
        }
    )


def make_dataset_folder(root, n_train_shards: int = 2):
    """A built dataset folder: card with ``configs``, Parquet shards per split, ``meta/``."""
    (root / "data" / "train").mkdir(parents=True)
    (root / "data" / "test").mkdir(parents=True)
    (root / "meta").mkdir()
    for k in range(n_train_shards):
        pq.write_table(_shard(k, 7), root / "data" / "train" / f"file-{k:03d}.parquet")
    pq.write_table(_shard(50, 3), root / "data" / "test" / "file-000.parquet")
    (root / "meta" / "info.json").write_text(
        json.dumps({"codebase_version": "v1", "total_rows": 7 * n_train_shards + 3})
    )
    (root / "meta" / "stats.json").write_text(json.dumps({"teff": {"center": 4800.0, "scale": 500.0}}))
    (root / "README.md").write_text(CARD)
    (root / "build.log").write_text("local only\n")  # not part of the dataset: must stay local
    return root


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """The stand-in Hub, with this process's huggingface_hub pointed at it (Xet off: see hub_server)."""
    import huggingface_hub.constants as constants

    with HubServer(token=TOKEN) as server:
        monkeypatch.setattr(constants, "ENDPOINT", server.endpoint)
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
        monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(tmp_path / "agent_harnesses.json"))
        yield server


def _local_split(root, split: str) -> pa.Table:
    files = sorted((root / "data" / split).glob("*.parquet"))
    return pa.concat_tables([pq.read_table(f) for f in files])


def _load_in_fresh_process(
    hub: HubServer, repo_id: str, out_dir, revision: str | None = None
) -> dict[str, pa.Table]:
    """``load_dataset(repo_id)`` in a new interpreter; each split is written to Parquet and read back here."""
    script = textwrap.dedent(
        f"""
        import sys
        import datasets
        import pyarrow.parquet as pq
        # The dataset viewer's Parquet export lives on another host (datasets-server.<HF_ENDPOINT host>),
        # which the stand-in cannot be; skip that optional lookup rather than wait on DNS.
        datasets.config.USE_PARQUET_EXPORT = False
        ds = datasets.load_dataset({repo_id!r}, revision={revision!r})
        for split, data in ds.items():
            pq.write_table(data.data.table, sys.argv[1] + "/" + split + ".parquet")
        """
    )
    env = {
        **os.environ,
        "HF_ENDPOINT": hub.endpoint,
        "HF_HOME": str(out_dir / "hf_home"),
        "HF_TOKEN": TOKEN,
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    }
    result = subprocess.run(
        [sys.executable, "-c", script, str(out_dir)], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return {path.stem: pq.read_table(path) for path in out_dir.glob("*.parquet")}


@pytest.mark.slow
def test_publish_then_load_dataset_in_a_fresh_process(hub, tmp_path):
    folder = make_dataset_folder(tmp_path / "dataset")
    url = publish(folder, REPO, token=TOKEN)

    assert hub.commit_titles(REPO, "dataset") == ["Publish dataset (6 files)", "initial commit"]
    assert url.endswith(hub.repos[("dataset", REPO)].branches["main"])
    remote = hub.files(REPO, "dataset")
    assert set(remote) == {
        ".gitattributes",
        "README.md",
        "data/train/file-000.parquet",
        "data/train/file-001.parquet",
        "data/test/file-000.parquet",
        "meta/info.json",
        "meta/stats.json",
    }
    assert remote["data/train/file-001.parquet"] == (folder / "data/train/file-001.parquet").read_bytes()
    # Parquet went through the LFS batch API (upload + verify), the card inline in the commit.
    assert len(hub.lfs_objects) == 3
    assert ("POST", f"/datasets/{REPO}.git/info/lfs/objects/batch") in hub.requests

    loaded = _load_in_fresh_process(hub, REPO, tmp_path / "loaded")
    assert set(loaded) == {"train", "test"}
    for split, table in loaded.items():
        local = _local_split(folder, split)
        assert table.schema.remove_metadata().equals(local.schema.remove_metadata()), split
        assert table.num_rows == local.num_rows, split
        for name in local.column_names:  # pyarrow's equals() treats NaN != NaN; numpy's check does not
            np.testing.assert_array_equal(table[name].to_numpy(), local[name].to_numpy(), err_msg=name)
    assert hub.unhandled == [] and hub.errors == []


def test_republish_replaces_stale_shards_and_publishes_to_a_branch(hub, tmp_path):
    publish(make_dataset_folder(tmp_path / "v1", n_train_shards=3), REPO, token=TOKEN)
    assert "data/train/file-002.parquet" in hub.files(REPO, "dataset")

    rebuilt = make_dataset_folder(tmp_path / "v2", n_train_shards=1)
    publish(rebuilt, REPO, token=TOKEN)
    remote = hub.files(REPO, "dataset")
    assert sorted(p for p in remote if p.startswith("data/")) == [
        "data/test/file-000.parquet",
        "data/train/file-000.parquet",
    ]
    assert "build.log" not in remote
    assert len(hub.commit_titles(REPO, "dataset")) == 3

    publish(make_dataset_folder(tmp_path / "v3", n_train_shards=2), REPO, token=TOKEN, revision="v3")
    assert "data/train/file-001.parquet" in hub.files(REPO, "dataset", revision="v3")
    assert "data/train/file-001.parquet" not in hub.files(REPO, "dataset")  # main untouched
    assert hub.unhandled == [] and hub.errors == []


def test_publish_creates_private_repo_and_rejects_bad_token(hub, tmp_path):
    from huggingface_hub.errors import HfHubHTTPError

    folder = make_dataset_folder(tmp_path / "dataset")
    publish(folder, "stellar/private-one", token=TOKEN, private=True)
    assert hub.repos[("dataset", "stellar/private-one")].private
    with pytest.raises(HfHubHTTPError):
        publish(folder, "stellar/another", token="hf_wrong")
    assert ("dataset", "stellar/another") not in hub.repos


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda root: (root / "README.md").unlink(), "missing dataset card"),
        (lambda root: (root / "README.md").write_text("# no front matter\n"), "no YAML front matter"),
        (lambda root: (root / "README.md").write_text("---\nlicense: mit\n---\n"), "no non-empty 'configs'"),
        (
            lambda root: (root / "README.md").write_text(CARD.replace("data/test/", "data/valid/")),
            "matches no file",
        ),
        (lambda root: (root / "meta" / "info.json").unlink(), "info.json: missing"),
        (lambda root: (root / "meta" / "stats.json").write_text("{"), "stats.json: not valid JSON"),
        (lambda root: (root / "data" / "train" / "file-002.parquet.tmp").write_bytes(b"PAR1"), "unfinished"),
        (
            lambda root: (root / "data" / "train" / "file-000.parquet").write_bytes(b"garbage"),
            "not a readable Parquet",
        ),
        (
            lambda root: pq.write_table(
                pa.table({"teff": [1.0]}), root / "data" / "train" / "file-009.parquet"
            ),
            "different schemas",
        ),
        (
            lambda root: pq.write_table(
                _shard(9, 7).slice(0, 0), root / "data" / "test" / "file-001.parquet"
            ),
            "has no rows",
        ),
    ],
)
def test_incomplete_folders_are_refused_before_any_upload(hub, tmp_path, damage, message):
    folder = make_dataset_folder(tmp_path / "dataset")
    damage(folder)
    with pytest.raises(ValueError, match=message):
        publish(folder, REPO, token=TOKEN)
    assert hub.requests == []


def test_validate_lists_the_files_to_upload(tmp_path):
    files = validate_dataset_folder(make_dataset_folder(tmp_path / "dataset"))
    assert files == [
        "README.md",
        "data/test/file-000.parquet",
        "data/train/file-000.parquet",
        "data/train/file-001.parquet",
        "meta/info.json",
        "meta/stats.json",
    ]
