"""The model card: rendered from the model folder's facts and measured results, never typed by hand."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from stellar_tasks.card import render_model_card, write_model_card
from stellar_tasks.cli import main

LABELS = {"teff": "K", "logg": "dex", "fe_h": "dex"}
SCATTER = {"teff": 61.2345, "logg": 0.1876, "fe_h": 0.0934}


def _results() -> dict:
    parameters = []
    for setting in "abcde":
        for label, unit in LABELS.items():
            model = {
                "n": 100,
                "scatter": SCATTER[label] * (1 + "abcde".index(setting)),
                "bias": 0.01,
                "z_std": 1.04,
            }
            model |= {"coverage_68": 0.66, "coverage_95": 0.94}
            common = {"setting": setting, "label": label, "unit": unit}
            parameters.append({**common, "method": "model", **model})
            parameters.append(
                {**common, "method": "xgboost", "n": 100, "scatter": SCATTER[label] * 1.3, "bias": 0.0}
            )
    goals = [
        {"label": "teff", "goal": "scatter <= 0.85 x XGBoost", "value": 0.77, "met": True, "margin": 0.08},
        {"label": "logg", "goal": "|z std - 1| <= 0.1", "value": 1.31, "met": False, "margin": -0.21},
    ]
    spectra = [
        {
            "task": "parameters",
            "description": "Teff, log g, [Fe/H] -> all 110 XP coefficients",
            "n_stars": 100,
            "median_scatter_ratio": 0.9,
            "median_scatter_ratio_signal": 0.75,
            "model": {"flux": {"chi2_reduced": 12.5}},
            "xgboost": {"flux": {"chi2_reduced": 15.25}},
            "beats_xgboost": True,
        }
    ]
    branch = {"median_abs_delta_teff": 43.21, "logg_range": [1.0, 3.5]}
    return {
        "meta": {
            "model_parameters": 792322,
            "split": {"train_stars": 35866, "test_stars": 3985},
            "baseline": {"mode": "full", "description": "labels: 4000 trees"},
        },
        "parameters": parameters,
        "goals": goals,
        "spectra": spectra,
        "loci": {
            "branches": {"giant branch": branch, "main sequence": {**branch, "median_abs_delta_teff": 88.8}}
        },
        "extinction": {
            "normalisation": "(A(lambda) - A(550 nm)) / (A(440 nm) - A(550 nm))",
            "range_nm": [400.0, 950.0],
            "n_stars": 1000,
            "statistic": "median over stars of each star's colour-excess curve",
            "laws": {
                "F99": {
                    "description": "Fitzpatrick (1999), R_V = 3.1",
                    "mean_abs_deviation": 0.0712,
                    "populations": {
                        "giants": {"mean_abs_deviation": 0.0345},
                        "dwarfs": {"mean_abs_deviation": 0.1326},
                    },
                }
            },
        },
    }


@pytest.fixture
def model_dir(tmp_path):
    folder = tmp_path / "stellar-foundation-apogee-xp"
    folder.mkdir()
    config = {"d_model": 128, "encoder_attention_heads": [8, 8], "decoder_attention_heads": [8, 4]}
    config |= {"head_hidden_dims": [256], "context_length": 128}
    (folder / "config.json").write_text(json.dumps(config))
    facts = {
        "training": {"batch_size": 256, "learning_rate": 0.001, "max_steps": 8000, "requests_per_star": 16}
    }
    facts |= {"steps": 8000, "train_minutes": 71.5, "hardware": "CPU, 2 cores, torch 2.13"}
    (folder / "training_facts.json").write_text(json.dumps(facts))
    return folder


def _front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def test_front_matter_and_model_index_from_results(model_dir):
    card = render_model_card(model_dir, _results())
    metadata = _front_matter(card)
    assert metadata["pipeline_tag"] == "tabular-regression"
    assert metadata["library_name"] == "transformers"
    assert metadata["license"] == "mit"
    assert metadata["datasets"] == ["stellar-foundation/apogee-gaia-xp"]
    assert {"astronomy", "gaia", "apogee"} <= set(metadata["tags"])
    index = metadata["model-index"][0]
    assert index["name"] == "stellar-foundation-apogee-xp"
    metrics = index["results"][0]["metrics"]
    scatter = {m["name"]: m["value"] for m in metrics if m["type"] == "mad_std"}
    assert scatter["scatter Teff [K], setting (a)"] == SCATTER["teff"]
    assert scatter["scatter [Fe/H] [dex], setting (c)"] == pytest.approx(SCATTER["fe_h"] * 3)
    assert len(scatter) == 15
    assert {m["type"] for m in metrics} == {"mad_std", "z_std", "coverage_68"}
    assert index["results"][0]["dataset"]["split"] == "test"


def test_body_carries_facts_results_usage_and_citation(model_dir):
    card = render_model_card(model_dir, _results(), repo_id="someone/my-star-model")
    assert "\n# my-star-model\n" in card
    assert 'AutoModel.from_pretrained("someone/my-star-model", trust_remote_code=True, revision=' in card
    assert "AutoFeatureExtractor.from_pretrained" in card and 'pipeline(model="someone/my-star-model"' in card
    assert "| (a) | Teff [K] | 61.2 | 79.6 |" in card  # model beside XGBoost (1.3 x 61.2345)
    assert "| training time | 71.5 minutes |" in card and "| hardware | CPU, 2 cores, torch 2.13 |" in card
    assert "792,322 parameters" in card and "35866 training stars" in card
    assert "| 12.5 | 15.2 | 0.9 (0.75) |" in card  # flux chi2, model and XGBoost; coefficient scatter ratios
    assert "43.2 K on the giant branch" in card and "0.0712 from Fitzpatrick (1999)" in card
    assert "  - logg: |z std - 1| <= 0.1 (measured 1.31)" in card  # an unmet goal is a limitation
    assert "teff: scatter <= 0.85" not in card  # a met goal is not
    assert "Spectrum tasks where XGBoost does better" not in card  # the fixture's spectra all beat it
    assert "2308.10944" in card and "Leung" in card


def remote_code_calls(card: str) -> list[str]:
    """The arguments of the card's calls that load with ``trust_remote_code=True`` (whatever their line breaks)."""
    return re.findall(
        r"(?:from_pretrained|pipeline)\(([^()]*trust_remote_code=True[^()]*)\)", " ".join(card.split())
    )


def test_every_remote_code_snippet_pins_the_revision(model_dir):
    # rendered before its push, the card cannot know the commit: a placeholder and where the sha comes from
    card = render_model_card(model_dir, _results(), repo_id="someone/my-star-model")
    calls = remote_code_calls(card)
    assert len(calls) == 3  # AutoModel, AutoFeatureExtractor, pipeline
    assert all('"someone/my-star-model"' in call and 'revision="<commit sha>"' in call for call in calls)
    assert "in place of `<commit sha>`: `stellar-foundation push` prints the" in card
    sha = "0123456789abcdef0123456789abcdef01234567"
    card = render_model_card(model_dir, _results(), repo_id="someone/my-star-model", revision=sha)
    assert len(calls := remote_code_calls(card)) == 3 and all(f'revision="{sha}"' in call for call in calls)
    assert f"`{sha}` is the commit this card was rendered for." in card and "<commit sha>" not in card


def test_warm_restart_card_tells_the_run_it_started_from(model_dir):
    facts_file = model_dir / "training_facts.json"
    first = json.loads(facts_file.read_text())
    restart = {**first, "steps": 3000, "train_minutes": 20.0, "initialised_from": first}
    facts_file.write_text(json.dumps(restart))
    card = render_model_card(model_dir, _results())
    assert "| steps trained | 3000 |" in card and "| training time | 20 minutes |" in card
    assert "| started from | 8000 steps, learning rate 0.001, headline_fraction" in card
    assert "71.5 minutes on CPU, 2 cores, torch 2.13; this run is a warm restart from its weights" in card
    third = {**restart, "steps": 500, "training": {**first["training"], "spectra_fraction": 0.25},
             "initialised_from": restart}  # fmt: skip
    facts_file.write_text(json.dumps(third))
    card = render_model_card(model_dir, _results())
    assert card.index("| started from (stage 1 of 3) | 8000 steps") < card.index(
        "| started from (stage 2 of 3) | 3000"
    )
    assert "| spectra_fraction | 0.25 |" in card and "the next stage is a warm restart" in card
    facts_file.write_text(json.dumps(first))
    assert "| started from |" not in render_model_card(model_dir, _results())


def test_a_spectrum_task_lost_to_xgboost_is_a_limitation(model_dir):
    results = _results()
    results["spectra"][0] |= {"beats_xgboost": False, "model": {"flux": {"chi2_reduced": 250.5}}}
    card = render_model_card(model_dir, results)
    limitations = card.split("## Limitations")[1]
    assert "Teff, log g, [Fe/H] -> all 110 XP coefficients: chi2 250 against XGBoost's 15.2" in limitations


def test_missing_training_facts_say_so(model_dir):
    (model_dir / "training_facts.json").unlink()
    card = render_model_card(model_dir, _results())
    assert "| hardware | not recorded |" in card and "| training time | n/a minutes |" in card


def test_write_is_atomic_and_cli_rerenders(model_dir, tmp_path):
    results = _results()
    path = write_model_card(model_dir, results)
    assert path == model_dir / "README.md"
    assert path.read_text() == render_model_card(model_dir, results)
    assert not list(model_dir.glob("*.tmp"))
    results_file = tmp_path / "results.json"
    results["parameters"][0]["scatter"] = 55.5
    results_file.write_text(json.dumps(results))
    assert main(["evaluate", "--model", str(model_dir), "--results", str(results_file), "--write-card"]) == 0
    assert "| (a) | Teff [K] | 55.5 |" in path.read_text()


def test_a_distilled_fast_path_is_described_from_its_own_config(model_dir):
    assert "--distilled" not in render_model_card(model_dir, _results())
    holdout = {
        "stars": 90,
        "teff_scatter_ratio": 1.0123,
        "logg_scatter_ratio": 0.9987,
        "fe_h_scatter_ratio": 1.0044,
    }
    (model_dir / "distilled").mkdir()
    config = {
        "members": 3,
        "hidden_dims": [64, 32],
        "inputs": ["bp0", "rp0"],
        "requests": ["teff"],
        "holdout": holdout,
    }
    (model_dir / "distilled" / "config.json").write_text(json.dumps(config))
    card = " ".join(render_model_card(model_dir, _results(), repo_id="someone/my-star-model").split())
    assert "--model someone/my-star-model --distilled" in card
    assert "3 MLPs (64-32 wide)" in card and "teff from 2 inputs" in card
    assert "(90 stars)" in card and "1.012 / 0.9987 / 1.004 times the model's" in card
