"""The dashboard in a real browser (SPEC.md section 13): headless Chromium renders the page
after a known burst of allowed and limited requests; the route table's numbers agree with
/metrics, the token comes from the URL fragment (then leaves the address bar) or from the
form, and the page asks nothing of any server but the admin listener. Skipped when
Chromium, its driver or Selenium is missing (scripts/install-deps.sh --test installs them).

SLUICE_DASHBOARD_SCREENSHOT=FILE saves a PNG of the rendered page (scripts/dashboard-screenshot.sh)."""
import json
import os
import re
import shutil

import pytest

from dashboard_support import BURST, TOKEN, burst, start

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
try:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:
    webdriver = None

pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER and webdriver),
                                reason="needs chromium, chromium-driver and python3-selenium")

WAIT = 15  # seconds for the page to show what it should: two refreshes are 4 s


@pytest.fixture
def browser():
    opts = Options()
    # As root, Chromium needs --no-sandbox.
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000", "--no-first-run", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update",
                "--disable-default-apps", "--disable-sync"):
        opts.add_argument(arg)
    opts.binary_location = CHROMIUM
    # The DevTools network log: every request the page makes, with its URL.
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(WAIT)
    yield driver
    driver.quit()


def digits(text):
    return int(re.sub(r"[^0-9]", "", text))


def cell(driver, route, cls):
    return driver.find_element(By.CSS_SELECTOR, f'tr[data-route="{route}"] td.{cls}').text


def requested(driver):
    """The URLs of every request the browser sent since the last call."""
    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    return urls


def test_the_page_in_chromium(sluice_factory, upstream, browser):
    s = start(sluice_factory, upstream)
    statuses = burst(s.port, ["/api/x"] * (BURST + 3) + ["/web/y"] * 4)
    assert statuses == [200] * BURST + [429] * 3 + [200] * 4, statuses
    base = f"http://127.0.0.1:{s.admin_port}/"
    wait = WebDriverWait(browser, WAIT, poll_frequency=0.1)

    browser.get(base + "#token=" + TOKEN)
    # The table shows the burst and the chart its first sample.
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, 'tr[data-route="api"] svg.chart path.l'))
    m = s.metrics()
    for name in ("api", "web"):
        for cls in ("allowed", "limited"):
            assert digits(cell(browser, name, cls)) == \
                m.value("sluice_requests_total", route=name, decision=cls), (name, cls)
    assert (digits(cell(browser, "api", "allowed")), digits(cell(browser, "api", "limited"))) == \
        (BURST, 3)
    top = browser.find_element(By.CSS_SELECTOR, '[data-limit="api/per_ip"]').text
    assert "127.0.0.1" in top and f"requests ({BURST + 3})" in top and "denials (3)" in top
    limits = browser.find_element(By.CSS_SELECTOR, 'tr[data-route="api"] td:nth-child(2)').text
    assert "per_ip" in limits and "sliding_window" in limits and f"{BURST}/1m" in limits
    assert "memory" in limits
    assert s.config_path in browser.find_element(By.ID, "config").text

    # The token left the address bar for the tab's sessionStorage.
    assert "#" not in browser.current_url and TOKEN not in browser.current_url
    assert browser.execute_script("return sessionStorage.getItem('sluice.admin.token')") == TOKEN

    # Nothing but the admin listener: by the browser's network log and by the page's own
    # resource timing, and no policy violation reported.
    urls = requested(browser)
    assert base + "dashboard.json" in urls, urls
    assert all(u.startswith(base) or u.startswith("data:") for u in urls), urls
    names = browser.execute_script(
        "return performance.getEntriesByType('navigation')"
        ".concat(performance.getEntriesByType('resource')).map(e => e.name)")
    assert base + "dashboard.json" in names, names
    assert all(n.startswith(base) or n.startswith("data:") for n in names), names
    console = browser.get_log("browser")
    assert not [e for e in console if e["level"] == "SEVERE"], console

    path = os.environ.get("SLUICE_DASHBOARD_SCREENSHOT")
    if path:
        browser.save_screenshot(path)

    # Without a token the page asks for one; a wrong one is refused, the right one shows.
    browser.execute_script("sessionStorage.clear()")
    browser.get(base)
    wait.until(lambda d: d.find_element(By.ID, "login").is_displayed())
    assert not browser.find_element(By.ID, "main").is_displayed()
    field = browser.find_element(By.ID, "token")
    field.send_keys("not-the-token\n")
    wait.until(lambda d: "refused" in d.find_element(By.ID, "login-msg").text)
    browser.find_element(By.ID, "token").send_keys(TOKEN + "\n")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, 'tr[data-route="api"] td.allowed'))
    assert digits(cell(browser, "api", "allowed")) == BURST
    assert browser.find_element(By.ID, "main").is_displayed()
    assert not browser.find_element(By.ID, "login").is_displayed()
    assert all(u.startswith(base) or u.startswith("data:") for u in requested(browser))
