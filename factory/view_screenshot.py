"""The factory view in a real headless Chromium: log in through Airflow's login page, open "Factory" from the
navigation bar, open a model, save a screenshot.

The integration test drives the view with these same steps (`tests/integration/test_factory_view.py`), and
`screenshot_stack` makes the picture for the docs from a running stack (`docs/factory-view.png`).
Chromium and chromedriver are the Debian packages `make bootstrap` installs; selenium is told where both are,
so it never tries to download a browser or a driver.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

    from factory.stack import Stack

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
BROWSER_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking")
VIEW_NAME = "Factory"  # the external view's name on the navigation bar (plugins/factory_view_plugin.py)
VIEW_ROUTE = "plugin/factory"  # where the UI shows it
VIEW_PREFIX = "/factory"  # the plugin app's mount point
DEFAULT_WINDOW = (1440, 1600)


class BrowserUnavailableError(RuntimeError):
    """Chromium or chromedriver is missing (`make bootstrap` installs the Debian packages)."""


@contextmanager
def headless_chromium(window: tuple[int, int] = DEFAULT_WINDOW, timeout: float = 60.0) -> Iterator[WebDriver]:
    """A headless Chromium session (quit on exit)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        raise BrowserUnavailableError(f"{', '.join(missing)} not found: `make bootstrap` installs chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*BROWSER_FLAGS, f"--window-size={window[0]},{window[1]}", "--hide-scrollbars"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(timeout)
    try:
        yield driver
    finally:
        driver.quit()


def log_in(driver: WebDriver, base_url: str, username: str, password: str, timeout: float = 60.0) -> None:
    """Sign in on the auth manager's login page, as a person does; returns once the UI session cookie is set."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{base_url.rstrip('/')}/auth/login")
    wait = WebDriverWait(driver, timeout)
    wait.until(lambda d: d.find_elements(By.NAME, "username"))
    driver.find_element(By.NAME, "username").send_keys(username)
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(lambda d: d.get_cookie("_token") is not None)


def open_view_from_nav(driver: WebDriver, base_url: str, timeout: float = 60.0) -> None:
    """From the UI's home page, click "Factory" on the navigation bar and enter the view's frame."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as conditions
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{base_url.rstrip('/')}/")
    wait = WebDriverWait(driver, timeout)
    entry = wait.until(conditions.element_to_be_clickable((By.CSS_SELECTOR, f"a[href$='{VIEW_ROUTE}']")))
    entry.click()
    wait.until(conditions.frame_to_be_available_and_switch_to_it((By.CSS_SELECTOR, f"iframe[title='{VIEW_NAME}']")))
    wait.until(lambda d: d.find_elements(By.ID, "model-name"))


def open_model(driver: WebDriver, model: str | None = None, timeout: float = 60.0) -> str:
    """On the view's index (in its frame or opened directly), open `model` (default: the first listed)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, timeout)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#models"))
    rows = driver.find_elements(By.CSS_SELECTOR, "#models tr[data-model]")
    names = [row.get_attribute("data-model") for row in rows]
    if not names:
        raise LookupError("the factory view lists no registered model")
    chosen = model or names[0]
    if chosen not in names:
        raise LookupError(f"the factory view lists {names}, not {chosen!r}")
    driver.find_element(By.CSS_SELECTOR, f"#models tr[data-model='{chosen}'] a").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#aliases .card"))
    return chosen


def open_model_directly(driver: WebDriver, base_url: str, model: str, timeout: float = 60.0) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{base_url.rstrip('/')}{VIEW_PREFIX}/models/{quote(model, safe='')}")
    WebDriverWait(driver, timeout).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#aliases .card"))


def capture_factory_view(
    driver: WebDriver, base_url: str, username: str, password: str, out: Path, *, model: str | None = None
) -> str:
    """Log in, open the view from the navigation bar, open `model`, save the UI (frame included) as a PNG.

    Returns the model shown.
    """
    log_in(driver, base_url, username, password)
    open_view_from_nav(driver, base_url)
    shown = open_model(driver, model)
    driver.switch_to.default_content()
    out.parent.mkdir(parents=True, exist_ok=True)
    if not driver.save_screenshot(str(out)):
        raise RuntimeError(f"Chromium could not write {out}")
    return shown


def screenshot_stack(stack: Stack, out: Path, model: str | None = None) -> Path:
    """The docs' picture from a running stack: its Airflow URL and admin credentials (`factory stack up`)."""
    with headless_chromium() as driver:
        shown = capture_factory_view(
            driver,
            stack.settings.airflow_url,
            stack.credentials.airflow_admin_user,
            stack.credentials.airflow_admin_password,
            out,
            model=model,
        )
    print(f"factory view of {shown} saved to {out}")
    return out
