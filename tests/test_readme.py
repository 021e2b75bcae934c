"""The README's Python snippets run as written (on a tiny saved model), so they cannot rot."""

import re

import pytest

from tests.conftest import REPO_ROOT, create_test_model, create_test_tokenizer

SNIPPETS = re.findall(r"```python\n(.*?)```", (REPO_ROOT / "README.md").read_text(), flags=re.S)
SHIPPED = "pretrained/stellar-foundation-apogee-xp"


def test_readme_has_snippets():
    assert len(SNIPPETS) >= 2


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_readme_snippet_runs(index, tmp_path, monkeypatch):
    folder = tmp_path / "model"
    create_test_model().save_pretrained(folder)
    create_test_tokenizer().save_pretrained(folder)
    monkeypatch.chdir(REPO_ROOT)
    code = SNIPPETS[index].replace(f'"{SHIPPED}"', repr(str(folder)))
    exec(compile(code, f"README.md snippet {index}", "exec"), {"__name__": "__readme__"})
