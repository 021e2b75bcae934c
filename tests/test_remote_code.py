"""A saved folder, copied anywhere, loads in a fresh process that cannot import this repository."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import torch

from tests.conftest import create_test_model, create_test_stars, create_test_tokenizer

LOADER = textwrap.dedent(
    """
    import importlib.abc, json, sys

    class BlockRepository(importlib.abc.MetaPathFinder):
        # This process must not see the repository's packages (the venv has them installed editable).

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"modeling_stellar", "datasets_builder", "stellar_tasks", "train"}:
                raise ImportError(f"{name} is blocked: remote code must not need the repository")
            return None

    sys.meta_path.insert(0, BlockRepository())
    import torch
    from transformers import AutoFeatureExtractor, AutoModel
    folder = sys.argv[1]
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    tokenizer = AutoFeatureExtractor.from_pretrained(folder, trust_remote_code=True)
    assert type(model).__module__.startswith("transformers_modules."), type(model).__module__
    stars = json.load(open(folder + "/stars.json"))
    with torch.no_grad():
        output = model(**tokenizer(stars, requests=["teff", "logg"]))
    mean, std = tokenizer.decode(torch.tensor([tokenizer.convert_names_to_ids(["teff", "logg"])] * len(stars)),
                                 output.mean, output.log_variance)
    print(json.dumps({"class": type(model).__name__, "tokenizer": type(tokenizer).__name__,
                      "mean": output.mean.tolist(), "physical": mean.tolist()}))
    """
)


def test_folder_loads_with_trust_remote_code_in_a_fresh_process(tmp_path):
    model, tokenizer = create_test_model(), create_test_tokenizer()
    saved = tmp_path / "saved"
    model.save_pretrained(saved)
    tokenizer.save_pretrained(saved)
    config = json.loads((saved / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_stellar.StellarConfig",
        "AutoModel": "modeling_stellar.StellarForObservationPrediction",
    }
    assert {
        "configuration_stellar.py",
        "modeling_stellar.py",
        "tokenization_stellar.py",
        "model.safetensors",
    } <= {p.name for p in saved.iterdir()}
    copied = shutil.copytree(saved, tmp_path / "elsewhere" / "model")
    stars = create_test_stars(3)
    (copied / "stars.json").write_text(json.dumps(stars))
    workdir = tmp_path / "empty"
    workdir.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"))
    result = subprocess.run(
        [sys.executable, "-I", "-c", LOADER, str(copied)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["class"] == "StellarForObservationPrediction" and loaded["tokenizer"] == "StarTokenizer"
    with torch.no_grad():
        expected = model(**tokenizer(stars, requests=["teff", "logg"])).mean
    torch.testing.assert_close(torch.tensor(loaded["mean"]), expected, rtol=0, atol=1e-6)
