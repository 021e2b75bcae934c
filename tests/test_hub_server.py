"""The offline Hub stand-in answers ``huggingface_hub`` as the Hub does, for model repos too."""

from __future__ import annotations

import hashlib

import httpx
import pytest
from hub_server import HubServer

TOKEN = "hf_stand_in_token"


@pytest.fixture
def api(monkeypatch, tmp_path):
    import huggingface_hub.constants as constants
    from huggingface_hub import HfApi

    with HubServer(token=TOKEN) as server:
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
        monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(tmp_path / "agent_harnesses.json"))
        client = HfApi(endpoint=server.endpoint, token=TOKEN)
        client.server = server
        yield client


def test_model_repo_round_trip(api, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "stellar"}')
    weights = bytes(range(256)) * 64  # binary: stored with LFS
    (folder / "model.safetensors").write_bytes(weights)
    api.create_repo("stellar/tiny-model")
    api.upload_folder(repo_id="stellar/tiny-model", folder_path=str(folder), commit_message="weights")

    info = api.model_info("stellar/tiny-model", files_metadata=True)
    siblings = {s.rfilename: s for s in info.siblings}
    assert set(siblings) == {".gitattributes", "config.json", "model.safetensors"}
    assert siblings["model.safetensors"].lfs is not None and siblings["config.json"].lfs is None
    assert info.sha == api.list_repo_refs("stellar/tiny-model").branches[0].target_commit

    local = api.snapshot_download("stellar/tiny-model", cache_dir=str(tmp_path / "cache"))
    assert (tmp_path / "cache").exists()
    with open(f"{local}/model.safetensors", "rb") as stream:
        assert stream.read() == weights
    assert [c.title for c in api.list_repo_commits("stellar/tiny-model")] == ["weights", "initial commit"]
    paths = api.get_paths_info("stellar/tiny-model", ["config.json", "nowhere.txt"])
    assert [p.path for p in paths] == ["config.json"]
    assert api.server.unhandled == [] and api.server.errors == []


def test_errors_map_to_huggingface_hub_exceptions(api, tmp_path):
    from huggingface_hub.errors import (
        EntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    api.create_repo("stellar/data", repo_type="dataset", private=True)
    with pytest.raises(RepositoryNotFoundError):
        api.repo_info("stellar/absent", repo_type="dataset")
    with pytest.raises(RevisionNotFoundError):
        api.repo_info("stellar/data", repo_type="dataset", revision="v9")
    with pytest.raises(EntryNotFoundError):
        api.hf_hub_download("stellar/data", "README.md", repo_type="dataset", cache_dir=str(tmp_path))
    from huggingface_hub import HfApi

    anonymous = HfApi(endpoint=api.endpoint, token=False)
    with pytest.raises(RepositoryNotFoundError):  # private: as the Hub does, unreadable without a token
        anonymous.repo_info("stellar/data", repo_type="dataset")


def test_file_system_reads_byte_ranges(api):
    from huggingface_hub import HfFileSystem

    content = bytes(range(200)) * 10
    api.create_repo("stellar/blob")
    api.upload_file(path_or_fileobj=content, path_in_repo="nested/blob.bin", repo_id="stellar/blob")
    fs = HfFileSystem(endpoint=api.endpoint, token=TOKEN)
    assert fs.ls("stellar/blob/nested", detail=False) == ["stellar/blob/nested/blob.bin"]
    with fs.open("stellar/blob/nested/blob.bin", "rb", block_size=64) as stream:
        stream.seek(1000)
        assert stream.read(50) == content[1000:1050]
    assert ("GET", "/stellar/blob/resolve/main/nested/blob.bin") in api.server.requests
    url = f"{api.endpoint}/stellar/blob/resolve/main/nested/blob.bin"
    response = httpx.get(url, headers={"Range": "bytes=1000-1049", "Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 206 and response.content == content[1000:1050]
    assert response.headers["Content-Range"] == f"bytes 1000-1049/{len(content)}"
    assert response.headers["X-Linked-Etag"].strip('"') == hashlib.sha256(content).hexdigest()
