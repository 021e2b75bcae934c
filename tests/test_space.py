"""The demo Space in a real headless browser: load the page, submit a test star and typed observations, read back.

Needs Debian's ``chromium`` and ``chromium-driver`` (``make test`` installs them). The app runs as it would on the
Space (``python space/app.py``) against a tiny model folder and a tiny dataset folder made here.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modeling_stellar import StellarParameterPipeline
from stellar_tasks.hub import prepare_model_folder
from tests.conftest import REPO_ROOT, create_test_tokenizer
from tests.test_pipeline import lively_model

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1800",
]
PARAMETERS = {"teff": ("{:.0f}", "K"), "logg": ("{:.2f}", "dex"), "fe_h": ("{:.2f}", "dex")}


def make_dataset_folder(root, n_train: int = 300, n_test: int = 5, seed: int = 0):
    """A dataset folder as the build writes it (``data/{split}-*.parquet``), with plausible random stars."""
    rng = np.random.default_rng(seed)
    (root / "data").mkdir(parents=True)
    for split, n in (("train", n_train), ("test", n_test)):
        columns = {"gaia_dr3_source_id": pa.array(rng.integers(1, 2**62, n), pa.int64())}
        observations = {
            f"{band}{i}": rng.normal(0.0, 0.3 / (1 + i), n) for band in ("bp", "rp") for i in range(55)
        }
        observations |= {
            "bprp": rng.uniform(0.8, 2.0, n),
            "jh": rng.uniform(0.3, 0.9, n),
            "jk": rng.uniform(0.4, 1.1, n),
        }
        observations |= {
            "teff": rng.uniform(3800, 6500, n),
            "logg": rng.uniform(0.8, 4.7, n),
            "fe_h": rng.normal(-0.2, 0.3, n),
        }
        for name, values in observations.items():
            columns[name] = pa.array(values.astype(np.float32))
            columns[f"{name}_err"] = pa.array(np.full(n, 0.01, np.float32))
        columns["phot_g_mean_mag"] = pa.array(rng.uniform(9, 15, n).astype(np.float32))
        pq.write_table(pa.table(columns), root / "data" / f"{split}-00000-of-00001.parquet")
    return root


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def space(tmp_path):
    """The app serving on loopback; yields (url, model folder, dataset folder)."""
    model = prepare_model_folder(lively_model(), create_test_tokenizer(), tmp_path / "model")
    dataset = make_dataset_folder(tmp_path / "dataset")
    port = free_port()
    env = {
        **os.environ,
        "STELLAR_MODEL": str(model),
        "STELLAR_DATASET": str(dataset),
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HOME": str(tmp_path / "hf_home"),
        "HF_HUB_OFFLINE": "1",
        "MPLCONFIGDIR": str(tmp_path / "matplotlib"),
    }
    url = f"http://127.0.0.1:{port}/"
    with open(tmp_path / "app.log", "w") as log:
        app = subprocess.Popen(
            [sys.executable, str(REPO_ROOT / "space" / "app.py")], env=env, stdout=log, stderr=log
        )
    try:
        deadline = time.monotonic() + 240
        while True:
            assert app.poll() is None, (tmp_path / "app.log").read_text()[-3000:]
            try:
                urllib.request.urlopen(url, timeout=5)
                break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "app.log").read_text()[-3000:]
                time.sleep(1)
        yield url, model, dataset
    finally:
        app.terminate()
        app.wait(timeout=30)


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    driver_path = shutil.which("chromedriver") or "/usr/lib/chromium/chromedriver"
    options = webdriver.ChromeOptions()
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def expected_texts(model_folder, star: dict[str, float]) -> dict[str, str]:
    """What the page must show for ``star``: the pipeline's mean ± std in the app's format."""
    from transformers import pipeline

    predictor = pipeline(model=str(model_folder), trust_remote_code=True, device="cpu")
    assert type(predictor).__name__ == StellarParameterPipeline.__name__  # the folder's remote code
    result = predictor(star, requests=list(PARAMETERS))
    return {
        name: f"{fmt.format(result[name]['mean'])} ± {fmt.format(result[name]['std'])} {unit}"
        for name, (fmt, unit) in PARAMETERS.items()
    }


def read_results(driver, previous: dict[str, str] | None = None, timeout: float = 120) -> dict[str, str]:
    """The three result boxes, once all are filled (and differ from ``previous``)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def filled(driver):
        texts = {
            name: driver.find_element(
                By.CSS_SELECTOR, f"#result-{name} textarea, #result-{name} input"
            ).get_attribute("value")
            for name in PARAMETERS
        }
        return texts if all(texts.values()) and texts != previous else False

    return WebDriverWait(driver, timeout).until(filled)


def star_of_xp_export(path, phot_g_mean_mag: float) -> dict[str, float]:
    """The first source of a Gaia archive export as the dataset build would turn it into observations."""
    from datasets_builder.archive import archive_rows
    from datasets_builder.gaia_archive import read_gaia_xp

    xp = read_gaia_xp(path, correlations=False)[:1]
    xp["phot_g_mean_mag"] = [phot_g_mean_mag]
    row = archive_rows(xp)[0]
    names = set(create_test_tokenizer().observation_names)
    return {c: float(row[c]) for c in row.colnames if c in names or c.removesuffix("_err") in names}


@pytest.mark.slow
def test_space_in_a_headless_browser(space, browser, shared_dir):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    url, model_folder, dataset_folder = space
    browser.get(url)
    wait = WebDriverWait(browser, 120)
    button = wait.until(ec.element_to_be_clickable((By.ID, "predict-test-star")))
    assert browser.title == "stellar-foundation"

    # 1. the first test star, chosen by default in the menu
    button.click()
    shown = read_results(browser)
    test = pq.read_table(next((dataset_folder / "data").glob("test-*.parquet"))).to_pylist()[0]
    star = {k: v for k, v in test.items() if k not in ("gaia_dr3_source_id", "phot_g_mean_mag")}
    assert shown == expected_texts(model_folder, star)
    for plot in ("kiel-plot", "spectrum-plot"):  # matplotlib figures arrive as images
        image = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, f"#{plot} img")))
        assert image.get_attribute("naturalWidth") not in (None, "0"), plot

    # 2. observations typed by hand
    browser.find_element(By.XPATH, "//button[@role='tab'][contains(., 'Type observations')]").click()
    box = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "#observations textarea")))
    box.clear()
    box.send_keys("bprp 1.35 0.01\njh 0.62\njk 0.81 0.02")
    browser.find_element(By.ID, "predict-typed").click()
    typed = read_results(browser, previous=shown)
    assert typed == expected_texts(
        model_folder, {"bprp": 1.35, "bprp_err": 0.01, "jh": 0.62, "jk": 0.81, "jk_err": 0.02}
    )

    # 3. a Gaia archive export, uploaded, with G typed since the export has none
    export = shared_dir / "fixtures" / "gaia_archive" / "XP_CONTINUOUS_RAW.csv"
    browser.find_element(By.XPATH, "//button[@role='tab'][contains(., 'Gaia XP file')]").click()
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#xp-file input[type=file]"))).send_keys(
        str(export)
    )
    wait.until(ec.text_to_be_present_in_element((By.ID, "xp-file"), export.stem))  # upload finished
    g_box = browser.find_element(By.CSS_SELECTOR, "#g-mag input")
    g_box.clear()
    g_box.send_keys("12.3", Keys.TAB)  # leave the box: the page commits the whole number before the click
    wait.until(lambda _: g_box.get_attribute("value") == "12.3")
    browser.find_element(By.ID, "predict-file").click()
    uploaded = read_results(browser, previous=typed)
    assert uploaded == expected_texts(model_folder, star_of_xp_export(export, 12.3))
