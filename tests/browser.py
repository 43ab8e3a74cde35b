"""Open a local HTML page in headless Debian chromium and report what a reader would see.

Drives ``/usr/bin/chromium`` through ``/usr/bin/chromedriver`` with selenium. The driver path is
given explicitly, so Selenium Manager never runs and nothing is downloaded; every wait is
bounded, so a broken browser fails the check instead of hanging it.
"""

from __future__ import annotations

import base64
import importlib.util
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
INSTALL_HINT = "`apt-get install chromium chromium-driver` (.ci/run installs it)"
TIMEOUT_S = 10.0

_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--window-size=1200,900",
)
# Each <img> that did not decode, named by its alt text (or the start of its src).
_BROKEN_IMAGES_JS = """
return Array.from(document.images)
    .filter(img => !img.complete || img.naturalWidth === 0)
    .map(img => img.alt || img.src.slice(0, 60));
"""


@dataclass(frozen=True)
class PageCheck:
    """What :func:`check_page` saw.

    Attributes:
        title: the page's ``document.title``.
        images: the number of ``<img>`` elements.
        broken: the images that did not decode (alt text, or the start of ``src``).
        screenshot: the full-page PNG that was written.
    """

    title: str
    images: int
    broken: list[str]
    screenshot: Path


def browser_unavailable_reason() -> str | None:
    """Why :func:`check_page` cannot run here, or ``None`` when it can."""
    for program, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromedriver")):
        if not os.access(program, os.X_OK):
            return f"{package} not installed ({program} missing): {INSTALL_HINT}"
    if importlib.util.find_spec("selenium") is None:
        return "selenium not importable: pip install -e '.[test]'"
    return None


def check_page(path: Path, screenshot: Path) -> PageCheck:
    """Load ``path`` in headless chromium, wait until ``document.readyState`` is complete,
    count the images and those that did not decode, and save a full-page PNG to
    ``screenshot``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in _FLAGS:
        options.add_argument(flag)
    with tempfile.TemporaryDirectory(prefix="samplegrad-chromium-") as profile:
        options.add_argument(f"--user-data-dir={profile}")
        driver = webdriver.Chrome(
            service=Service(executable_path=str(CHROMEDRIVER)), options=options
        )
        try:
            driver.set_page_load_timeout(TIMEOUT_S)
            driver.set_script_timeout(TIMEOUT_S)
            driver.get(Path(path).resolve().as_uri())
            WebDriverWait(driver, TIMEOUT_S).until(
                lambda d: d.execute_script("return document.readyState") == "complete"
            )
            images = driver.execute_script("return document.images.length")
            broken = driver.execute_script(_BROKEN_IMAGES_JS)
            title = driver.title
            # chromedriver's own screenshot stops at the window; the DevTools protocol can
            # capture the whole laid-out page.
            size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
            shot = driver.execute_cdp_cmd(
                "Page.captureScreenshot",
                {
                    "format": "png",
                    "captureBeyondViewport": True,
                    "clip": {
                        "x": 0,
                        "y": 0,
                        "width": size["width"],
                        "height": size["height"],
                        "scale": 1,
                    },
                },
            )
        finally:
            driver.quit()
    screenshot.write_bytes(base64.b64decode(shot["data"]))
    return PageCheck(title=title, images=images, broken=broken, screenshot=screenshot)
