"""`newsrnn report`: one offline page that shows every candidate with the numbers of metrics/*.json."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
from browser import chrome, wait_for
from store import STORE_ARCHS

from newsrnn.report import COLUMNS, cell_value, fmt


@pytest.mark.slow
def test_report_renders_every_candidate_with_the_metrics_numbers(pipeline_store: dict) -> None:
    from selenium.webdriver.common.by import By

    root, page = pipeline_store["root"], pipeline_store["report"]
    champion = json.loads((root / "artifacts/champion.json").read_text())["arch"]
    source = page.read_text()
    # Offline: nothing is fetched from anywhere.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", source), "external resource in the page"
    assert "<script" not in source
    with chrome() as driver:
        driver.get(page.as_uri())
        wait_for(driver, "table#candidates tr.candidate", count=len(STORE_ARCHS))
        assert driver.find_element(By.ID, "champion").text == champion
        for arch in STORE_ARCHS:
            m = json.loads((root / "metrics" / f"{arch}.json").read_text())
            for key, _, digits in COLUMNS:
                cell = driver.find_element(By.CSS_SELECTOR, f"td[data-arch='{arch}'][data-key='{key}']")
                assert cell.text == fmt(cell_value(m, key), digits), (arch, key, cell.text)
                assert cell.text != "-", (arch, key)  # every number was measured
            assert driver.find_element(By.CSS_SELECTOR, f"figure.cm[data-arch='{arch}']").is_displayed()
            point = driver.find_element(By.CSS_SELECTOR, f"#scatter g.point[data-arch='{arch}']")
            assert point.is_displayed() and point.rect["width"] > 0
        marked = driver.find_elements(By.CSS_SELECTOR, "#scatter g.point.champion")
        assert [p.get_attribute("data-arch") for p in marked] == [champion]
        assert driver.find_element(By.CSS_SELECTOR, "tr.candidate.champion").get_attribute("data-arch") == champion
        # The confusion matrix cells add up to the test split.
        cm = driver.find_element(By.CSS_SELECTOR, f"figure.cm[data-arch='{champion}']")
        total = sum(int(td.text) for td in cm.find_elements(By.CSS_SELECTOR, "td.n"))
        per_class = json.loads((root / "metrics" / f"{champion}.json").read_text())["per_class"]
        assert total == sum(c["support"] for c in per_class.values())


@pytest.mark.slow
def test_report_is_an_artifact_of_the_champions_run_and_a_cli_command(pipeline_store: dict) -> None:
    from mlflow import MlflowClient

    root, uri = pipeline_store["root"], pipeline_store["uri"]
    champion = json.loads((root / "artifacts/champion.json").read_text())
    run_id = json.loads((root / "metrics" / f"{champion['arch']}.json").read_text())["run_id"]
    assert "report/index.html" in [a.path for a in MlflowClient(uri).list_artifacts(run_id, "report")]

    out = subprocess.run(["newsrnn", "report", "--out", "out/page.html", "--no-mlflow"], cwd=root,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert (root / "out/page.html").read_text().count('class="candidate') == len(STORE_ARCHS)
