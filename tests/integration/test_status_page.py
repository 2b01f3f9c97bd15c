"""The status page of `reconcile watch`, looked at in a real headless browser (Debian's chromium and its driver):
it loads, shows a drift that `docker stop` made and its repair, keeps secrets out, and changes nothing."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import free_port, wait_for

pytestmark = pytest.mark.engine

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
SECRET = "s3cr3t-token-never-shown"


def chromium_options(profile: Path):
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM or ""
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--window-size=1280,900",
    ):
        options.add_argument(arg)
    return options


@pytest.fixture
def browser(tmp_path: Path):
    """A headless chromium driven through chromedriver, with a fresh profile; quit after the test."""
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("chromium and chromium-driver are not installed (scripts/testenv.sh installs them)")
    pytest.importorskip("selenium")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=chromium_options(tmp_path / "chromium"))
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


def row_status(browser, subject: str) -> str | None:
    """The status the page shows for `subject`, reloading it (the page also reloads itself)."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        browser.refresh()
        row = browser.find_element(By.CSS_SELECTOR, f'tr[data-subject="{subject}"]')
        return row.get_attribute("data-status")
    except (NoSuchElementException, StaleElementReferenceException):
        return None


def test_page_shows_drift_and_repair_in_a_browser(api, project_name, tmp_manifests, watch, base_image, browser):
    """Loaded in chromium: the container is in sync; after `docker stop` the page shows the drift (the last pass's
    plan, the history) and the object in sync again once repaired; no secret appears; POST is refused."""
    from selenium.webdriver.common.by import By

    name = f"{project_name}-web"
    tmp_manifests("web.env", f"TOKEN={SECRET}\n")
    tmp_manifests(
        "web.yaml",
        f"""
        apiVersion: reconciler/v1
        kind: Container
        metadata: {{name: {name}}}
        spec:
          image: {base_image}
          command: ["sleep", "3600"]
          networkMode: none
          stopTimeout: 1
          envFiles: [./web.env]
        """,
    )
    tmp_manifests(
        "bad.yaml",
        f"""
        apiVersion: reconciler/v1
        kind: Container
        metadata: {{name: {name}-bad}}
        spec:
          image: {base_image}
          command: ["sh", "-c", "exit 3"]
          networkMode: none
        """,
    )
    port = free_port()
    w = watch(tmp_manifests.dir, "--resync", "300", "--metrics-addr", f"127.0.0.1:{port}")
    w.wait_log("engine.events_connected", timeout=20)
    w.wait_log("pass.done", timeout=30)
    url = f"http://127.0.0.1:{port}/"
    subject = f"Container/{name}"

    browser.get(url)
    assert f"Project {project_name}" in browser.find_element(By.TAG_NAME, "h1").text
    wait_for(lambda: row_status(browser, subject) == "in sync", 20, f"{subject} in sync on the page", 0.5)
    assert "create" in browser.find_element(By.ID, "history").text  # the first pass created it
    bad = browser.find_element(By.CSS_SELECTOR, f'tr[data-subject="Container/{name}-bad"]')
    assert bad.get_attribute("data-status") == "failing"
    assert "last error (permanent): the new container stopped right after starting (exit code 3)" in bad.text

    seen: set[str | None] = set()
    api.stop(name, timeout=1)

    def drift_plan() -> str:
        """The plan of the last pass that changed something (the page shows it apart once a later pass found
        nothing to do, e.g. the one the container's `stop` event triggers after the `die` one)."""
        from selenium.common.exceptions import NoSuchElementException

        for element_id in ("changes-plan", "plan"):
            try:
                text = browser.find_element(By.ID, element_id).text
            except NoSuchElementException:
                continue
            if f"~ {subject}" in text:
                return text
        return ""

    def repaired() -> bool:
        seen.add(row_status(browser, subject))
        return "in sync" in seen and "state" in drift_plan()

    wait_for(repaired, 30, f"the page to show the drift of {subject} and its repair", 0.3)
    plan = drift_plan()
    assert 'state: "stopped" -> "running"' in plan, plan  # the drift as the plan saw it
    history = browser.find_element(By.ID, "history").text
    assert "update" in history and "state" in history, history
    assert row_status(browser, subject) == "in sync"
    assert api.inspect_container(name)["State"]["Running"]
    assert SECRET not in browser.page_source

    with urllib.request.urlopen(f"{url}status.json", timeout=5) as resp:
        doc = json.load(resp)
    [obj] = [o for o in doc["objects"] if o["name"] == name]
    assert obj["status"] == "in sync" and doc["lastPass"]["finished"]
    assert any(h["name"] == name and "state" in h["fields"] for h in doc["history"])
    assert SECRET not in json.dumps(doc)

    for method in ("POST", "PUT", "DELETE"):
        request = urllib.request.Request(url, data=b"x", method=method)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == 405
        refused.value.close()
    assert w.stop() == 0
