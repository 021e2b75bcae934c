"""The README's Python snippets run as written, so they cannot rot: on a tiny saved model folder (fast, every snippet),
and the ones that load the shipped folder on that folder itself. The snippets that answer the README's star through
tokenizer -> model -> ``decode`` must give physically possible answers (a shipped model that fails in the README's way
fails here; the mutation test breaks a copy to show it); the others (the pipeline, spectra, embeddings) must run.

Only ```` ```python ```` blocks are snippets: output is shown in ```` ```text ```` blocks, commands in ```` ```bash ````."""

import math
import re

import pytest

from stellar_tasks.hub import prepare_model_folder
from tests.conftest import REPO_ROOT, create_test_model, create_test_tokenizer
from tests.mutations import copy_model_folder, shift_center

SNIPPETS = re.findall(r"```python\n(.*?)```", (REPO_ROOT / "README.md").read_text(), flags=re.S)
SHIPPED = "pretrained/stellar-foundation-apogee-xp"


def test_readme_has_snippets():
    assert len(SNIPPETS) >= 2
    assert SHIPPED_SNIPPETS, f"no snippet loads {SHIPPED}: nothing runs the shipped folder"
    assert ANSWERING_SNIPPETS, "no snippet answers the README's star through tokenizer -> model -> decode"


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_readme_snippet_runs(index, tmp_path, monkeypatch):
    # A whole model folder (remote code, pipeline registration), as the shipped one is, so pipeline(...) loads it.
    folder = prepare_model_folder(create_test_model(), create_test_tokenizer(), tmp_path / "model")
    monkeypatch.chdir(REPO_ROOT)
    code = SNIPPETS[index].replace(f'"{SHIPPED}"', repr(str(folder)))
    exec(compile(code, f"README.md snippet {index}", "exec"), {"__name__": "__readme__"})


SHIPPED_SNIPPETS = [index for index, code in enumerate(SNIPPETS) if f'"{SHIPPED}"' in code]
"""The snippets that load the shipped folder."""

ANSWERING_SNIPPETS = [index for index in SHIPPED_SNIPPETS if "tokenizer.decode(" in SNIPPETS[index]]
"""The shipped-folder snippets that answer the README's star with the model's own ``batch``, ``mean`` and ``std``."""

POSSIBLE = {"teff": (2_500.0, 50_000.0), "logg": (-1.0, 6.0), "fe_h": (-5.0, 1.5)}
"""Ranges (K, dex, dex) that any star's Teff, log g and [Fe/H] lie in: M dwarfs to O stars, supergiants to white
dwarfs' neighbours, the most metal-poor known stars to super-solar ones."""


def readme_answers(index: int, folder: str = SHIPPED) -> dict[str, tuple[float, float]]:
    """Run snippet ``index`` from the repository root with ``folder`` in place of the shipped folder and return
    its star's answers, ``{name: (mean, std)}``, from the snippet's own ``batch``, ``mean`` and ``std``."""
    code = SNIPPETS[index].replace(f'"{SHIPPED}"', repr(folder))
    namespace = {"__name__": "__readme__"}
    exec(compile(code, f"README.md snippet {index}", "exec"), namespace)
    names = namespace["tokenizer"].convert_ids_to_names(namespace["batch"]["request_ids"][0].tolist())
    return {
        name: (float(mean), float(std))
        for name, mean, std in zip(names, namespace["mean"][0], namespace["std"][0], strict=True)
    }


def impossible_answers(answers: dict[str, tuple[float, float]]) -> list[str]:
    """The names whose mean lies outside `POSSIBLE` (or is not finite) or whose std is not a positive number
    narrower than that range."""
    return [
        name
        for name, (mean, std) in answers.items()
        if not (POSSIBLE[name][0] < mean < POSSIBLE[name][1])
        or not (0.0 < std < POSSIBLE[name][1] - POSSIBLE[name][0])
        or not math.isfinite(mean + std)
    ]


@pytest.mark.parametrize("index", ANSWERING_SNIPPETS)
def test_readme_snippet_on_the_shipped_folder_answers_a_possible_star(index, monkeypatch, capsys):
    monkeypatch.chdir(REPO_ROOT)
    answers = readme_answers(index)
    assert sorted(answers) == sorted(POSSIBLE), "the snippet asks for Teff, log g and [Fe/H]"
    assert impossible_answers(answers) == []
    assert "teff" in capsys.readouterr().out, "the snippet prints its answers"


def test_possibility_check_reports_a_broken_shipped_folder(tmp_path, monkeypatch):
    broken = copy_model_folder(REPO_ROOT / SHIPPED, tmp_path)
    shift_center(broken, "teff", 100_000.0)  # every Teff answer moves by 100,000 K
    monkeypatch.chdir(REPO_ROOT)
    assert impossible_answers(readme_answers(ANSWERING_SNIPPETS[0], str(broken))) == ["teff"]


@pytest.mark.parametrize("index", [index for index in SHIPPED_SNIPPETS if index not in ANSWERING_SNIPPETS])
def test_readme_snippet_runs_on_the_shipped_folder(index, monkeypatch, capsys):
    monkeypatch.chdir(REPO_ROOT)
    exec(compile(SNIPPETS[index], f"README.md snippet {index}", "exec"), {"__name__": "__readme__"})
    assert capsys.readouterr().out, "the snippet prints what the README shows"


REMOTE_CODE_CALL = re.compile(
    r"(?:from_pretrained|pipeline)\((?:model=)?([^,()]*),([^()]*trust_remote_code=True[^()]*)\)"
)
"""A ``from_pretrained(source, ...)`` or ``pipeline(model=source, ...)`` call that runs the source's code."""


def is_hub_id(source: str) -> bool:
    """A quoted source that is no path in the repository (a variable or ``...`` stands for a local folder)."""
    source = source.strip()
    quoted = len(source) > 1 and source[0] == source[-1] and source[0] in "\"'"
    return quoted and not (REPO_ROOT / source[1:-1]).exists()


def test_every_hub_id_loaded_with_remote_code_pins_a_revision():
    calls = REMOTE_CODE_CALL.findall(" ".join((REPO_ROOT / "README.md").read_text().split()))
    hub_calls = [(source, rest) for source, rest in calls if is_hub_id(source)]
    assert hub_calls, "the README shows how to load from a Hub repo"
    assert [source for source, rest in hub_calls if "revision=" not in rest] == []
    # the snippets that run load the local folder, where a revision means nothing
    assert "folder" in {source for source, _ in calls if not is_hub_id(source)}
