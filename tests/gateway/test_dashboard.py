"""The operator dashboard: its session guard over HTTP, and the page itself driven in a real
headless Chromium against a real `burrow serve`."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import OPERATOR_KEY, Gateway
from tests.served import Served, stop_and_check

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
SCREENSHOT = ARTIFACTS / "dashboard.png"
WRONG_KEY_MESSAGE = "That key is not the operator key."
# Box names are user input; the page must show this as text, never run it.
HOSTILE_NAME = '<img src=x onerror="window.__burrow_pwned=1">'


def _session_cookie(response: httpx.Response) -> str:
    """The `burrow_session=…` pair a login response sets (sent back by hand: the in-process
    client's host has no dot, which the stdlib cookie jar handles differently per version)."""
    for header in response.headers.get_list("set-cookie"):
        pair = header.split(";", 1)[0].strip()
        if pair.startswith("burrow_session=") and pair != "burrow_session=":
            return pair
    raise AssertionError(f"no burrow_session cookie in {response.headers.get_list('set-cookie')}")


async def test_dashboard_without_a_session_shows_only_the_login_form(gateway: Gateway) -> None:
    _, home = await gateway.tenant("secret-tenant")
    c = gateway.client

    r = await c.get("/dashboard")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert 'action="/dashboard/login"' in r.text and 'name="key"' in r.text
    assert "secret-tenant" not in r.text and home not in r.text
    assert 'id="policy-form"' not in r.text  # the app page is for signed-in operators only

    wrong = await c.post("/dashboard/login", data={"key": "not-the-key"})
    assert wrong.status_code == 303
    assert wrong.headers["location"].endswith("/dashboard?error=bad_key")
    assert not any(h.startswith("burrow_session=") and not h.startswith("burrow_session=;")
                   for h in wrong.headers.get_list("set-cookie"))

    login = await c.post("/dashboard/login", data={"key": OPERATOR_KEY})
    assert login.status_code == 303 and login.headers["location"].endswith("/dashboard")
    cookie = {"Cookie": _session_cookie(login)}
    c.cookies.clear()  # from here on the cookie goes only where a request names it
    page = await c.get("/dashboard", headers=cookie)
    assert page.status_code == 200 and 'id="policy-form"' in page.text

    # The cookie alone must not authorise the API: a cross-site form or image could send it.
    for method, path in (("GET", "/v1/tenants"), ("GET", "/v1/policy"),
                         ("POST", f"/v1/boxes/{home}/freeze")):
        r = await c.request(method, path, headers=cookie)
        assert r.status_code in (401, 403), (method, path, r.status_code, r.text)
        assert "secret-tenant" not in r.text
    # Nor does the header without the cookie.
    r = await c.get("/v1/tenants", headers={"X-Burrow-Dashboard": "1"})
    assert r.status_code == 401
    # Cookie and header together are the dashboard's session.
    r = await c.get("/v1/tenants", headers={**cookie, "X-Burrow-Dashboard": "1"})
    assert r.status_code == 200 and "secret-tenant" in {t["id"] for t in r.json()}
    r = await c.get(f"/v1/boxes/{home}", headers={**cookie, "X-Burrow-Dashboard": "1"})
    assert r.status_code == 200 and r.json()["state"] == "running"

    out = await c.post("/dashboard/logout", headers=cookie)
    assert out.status_code == 303 and out.headers["location"].endswith("/dashboard")
    cleared = [h for h in out.headers.get_list("set-cookie") if h.startswith("burrow_session=")]
    assert cleared, "logout must clear the session cookie"


# --- the page in a real browser ------------------------------------------------------------

@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    server = Served(tmp_path / "data").start()
    yield server
    stop_and_check(server)


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.skip(f"the dashboard browser test needs Debian's chromium and chromium-driver "
                    f"({', '.join(missing)} missing); `make test` installs them")
    options = webdriver.ChromeOptions()
    # An explicit binary and driver: Selenium Manager must never try to download a browser.
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-dev-shm-usage", "--window-size=1440,1100"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the page's console
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _fresh_freeze_after(policy: dict[str, float | None]) -> int:
    """A freeze_after_s the server should accept (between pause and archive) and that differs
    from the current one."""
    low = int(policy["pause_after_s"] or 0)
    high = int(policy["archive_after_s"] or low + 100_000)
    value = (low + high) // 2 + 7
    if value >= high or value == policy["freeze_after_s"]:
        value = low + 1 if low + 1 != policy["freeze_after_s"] else low + 2
    return value


@pytest.mark.timeout(240)
def test_operator_signs_in_changes_the_policy_and_freezes_a_box_in_chromium(
        served: Served, browser: WebDriver) -> None:
    driver = browser
    api = httpx.Client(base_url=served.url, headers=served.operator, timeout=60)
    r = api.post("/v1/tenants", json={"id": "acme"})
    assert r.status_code == 201, r.text
    home = r.json()["home_box_id"]
    r = api.post("/v1/boxes", json={"tenant": "acme", "name": HOSTILE_NAME})
    assert r.status_code == 201, r.text
    before = api.get("/v1/policy").json()
    wait = WebDriverWait(driver, 30)
    shot = False
    try:
        driver.get(f"{served.url}/dashboard")
        key = wait.until(ec.visibility_of_element_located((By.ID, "key")),
                         "no login form at /dashboard")
        assert key.get_attribute("type") == "password"
        assert "acme" not in driver.page_source and home not in driver.page_source
        assert not driver.find_element(By.ID, "login-error").is_displayed()

        key.send_keys("op-wrong-key")
        driver.find_element(By.ID, "login-submit").click()
        error = wait.until(ec.visibility_of_element_located((By.ID, "login-error")),
                           "a wrong key did not show the login error")
        assert error.text == WRONG_KEY_MESSAGE and "error=bad_key" in driver.current_url

        driver.find_element(By.ID, "key").send_keys(OPERATOR_KEY)
        driver.find_element(By.ID, "login-submit").click()
        home_row = (By.CSS_SELECTOR, f'#boxes tr[data-box-id="{home}"]')
        wait.until(ec.presence_of_element_located(home_row),
                   "after signing in, the boxes table never listed the home box")
        wait.until(lambda d: d.find_element(By.ID, "policy-version").text
                   == str(before["version"]))

        # The hostile box name is shown as text; no element was made of it, no script ran.
        names = [e.text for e in driver.find_elements(By.CSS_SELECTOR, 'td[data-col="name"]')]
        assert HOSTILE_NAME in names
        assert driver.find_elements(By.CSS_SELECTOR, "#boxes img") == []
        assert driver.execute_script("return window.__burrow_pwned === undefined") is True

        # A bad value: the server's 422 message shows beside the form, nothing changes.
        field = driver.find_element(By.ID, "policy-freeze_after_s")
        field.clear()
        field.send_keys("-5")
        driver.find_element(By.ID, "policy-save").click()
        status = (By.CSS_SELECTOR, '#policy-status[data-kind="error"]')
        wait.until(lambda d: d.find_element(*status).text.strip() != "",
                   "a rejected policy value showed no error")
        assert api.get("/v1/policy").json()["version"] == before["version"]

        new_value = _fresh_freeze_after(before["policy"])
        field = driver.find_element(By.ID, "policy-freeze_after_s")
        field.clear()
        field.send_keys(str(new_value))
        driver.find_element(By.ID, "policy-save").click()
        wait.until(lambda d: "saved" in d.find_element(By.ID, "policy-status").text,
                   "the policy form never said saved")
        after = api.get("/v1/policy").json()
        assert after["policy"]["freeze_after_s"] == new_value
        assert after["version"] > before["version"]
        assert "dashboard" in (after["updated_by"] or "").lower(), after
        # Only the changed field was sent: the others are as they were.
        for name, value in before["policy"].items():
            if name != "freeze_after_s":
                assert after["policy"][name] == value, name
        wait.until(lambda d: d.find_element(By.ID, "policy-version").text
                   == str(after["version"]))
        assert driver.find_element(By.ID, "policy-freeze_after_s").get_attribute("value") \
            == str(new_value)
        # The tenant agents' model is text: empty means the server's BURROW_AGENT_MODEL.
        driver.find_element(By.ID, "policy-agent_model").send_keys("openai/gpt-x")
        driver.find_element(By.ID, "policy-save").click()
        wait.until(lambda d: api.get("/v1/policy").json()["policy"]["agent_model"]
                   == "openai/gpt-x", "the agent model typed in was not saved")

        freeze = (By.CSS_SELECTOR, f'#boxes tr[data-box-id="{home}"] [data-action="freeze"]')
        button = wait.until(ec.element_to_be_clickable(freeze),
                            "the home box has no enabled Freeze")
        # as a reader scrolls to it: chromedriver's own scroll leaves it under the sticky header
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", button)
        button.click()

        def home_shows_frozen(d: WebDriver) -> bool:
            row = d.find_element(*home_row)
            cell = row.find_element(By.CSS_SELECTOR, 'td[data-col="state"] .state')
            return row.get_attribute("data-state") == "frozen" and cell.text == "frozen"

        WebDriverWait(driver, 30, ignored_exceptions=[StaleElementReferenceException]).until(
            home_shows_frozen, "the home box row never showed frozen")
        assert api.get(f"/v1/boxes/{home}").json()["state"] == "frozen"
        message = driver.find_element(By.ID, "message")
        assert message.get_attribute("data-kind") == "ok" and home in message.text
        # No script error along the way (the rejected PUT is a network entry, not one of these).
        errors = [e for e in driver.get_log("browser")
                  if e["level"] == "SEVERE" and e.get("source") != "network"]
        assert errors == [], errors

        ARTIFACTS.mkdir(exist_ok=True)
        driver.save_screenshot(str(SCREENSHOT))
        shot = True

        driver.find_element(By.ID, "logout").click()
        wait.until(ec.visibility_of_element_located((By.ID, "login-form")))
        assert "acme" not in driver.page_source
    finally:
        if not shot:  # the page as it was when the test failed
            ARTIFACTS.mkdir(exist_ok=True)
            driver.save_screenshot(str(SCREENSHOT))
        api.close()



# --- the charts ------------------------------------------------------------------------------

CHARTS_SCREENSHOT = ARTIFACTS / "dashboard-charts.png"
# Each chart's series colours (gateway/dashboard/charts.js): a plot drew its data if its canvas
# has pixels of them (the axes and grid are grey, the background white).
SERIES_COLOURS = {"chart-wakes": [(46, 144, 250)], "chart-wake-time": [(18, 183, 106),
                                                                       (217, 45, 32)],
                  "chart-boxes": [(18, 183, 106)],  # running; the others were 0
                  "chart-queue": [(47, 95, 138)]}
COUNT_PIXELS = """
const [id, colours] = arguments;
const canvas = document.querySelector(`#${id} canvas`);
if (!canvas) return null;
const {data} = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
return colours.map(([r, g, b]) => {
  let n = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (Math.abs(data[i] - r) < 24 && Math.abs(data[i + 1] - g) < 24
        && Math.abs(data[i + 2] - b) < 24 && data[i + 3] > 200) n += 1;
  }
  return n;
});
"""


def _raw_get(port: int, target: str) -> tuple[int, bytes]:
    """A raw request line, as no HTTP client would normalise it."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


TRAVERSALS = ("/dashboard/assets/../routes/dashboard.py",
              "/dashboard/assets/%2e%2e/%2e%2e/core/security.py",
              "/dashboard/assets/..%2f..%2f..%2fpyproject.toml",
              "/dashboard/assets/vendor/uplot/../../index.html",
              "/dashboard/assets/%2fetc%2fpasswd",
              "/dashboard/assets/../../../../../../etc/passwd")


def _running_sampled_after(api: httpx.Client, since: float) -> int | None:
    """Boxes running in the first minute sample taken after `since` (None: none yet)."""
    samples = api.get("/v1/stats/history?hours=1").json()["samples"]
    after = [i for i, at in enumerate(samples["at"]) if at >= since]
    return samples["boxes"]["running"][after[0]] if after else None


@pytest.mark.timeout(300)
def test_charts_draw_a_scripted_burst_of_wakes_in_chromium(served: Served,
                                                           browser: WebDriver) -> None:
    driver = browser
    api = httpx.Client(base_url=served.url, headers=served.operator, timeout=60)
    wait = WebDriverWait(driver, 45)
    shot = False
    try:
        # The page's static files through `burrow serve`'s own HTTP server: only them.
        status, body = _raw_get(served.port, "/dashboard/assets/charts.js")
        assert status == 200 and b"BurrowCharts" in body
        for target in TRAVERSALS:
            status, body = _raw_get(served.port, target)
            assert status in (400, 404), (target, status, body[:200])
            for secret in (b"root:", b"import ", b"<html", b"[project]"):
                assert secret not in body, (target, body[:200])

        r = api.post("/v1/tenants", json={"id": "acme"})
        assert r.status_code == 201, r.text
        boxes = [r.json()["home_box_id"]]
        for name in ("one", "two"):
            r = api.post("/v1/boxes", json={"tenant": "acme", "name": name})
            assert r.status_code == 201, r.text
            boxes.append(r.json()["id"])

        driver.get(f"{served.url}/dashboard")
        wait.until(ec.visibility_of_element_located((By.ID, "key"))).send_keys(OPERATOR_KEY)
        driver.find_element(By.ID, "login-submit").click()
        # Before any wake, the wakes charts say so rather than draw an empty frame.
        empty = (By.CSS_SELECTOR, "#chart-wakes .chart-empty")
        wait.until(ec.visibility_of_element_located(empty),
                   "before any wake, the wakes chart did not say it has no data")
        assert driver.find_element(*empty).text.startswith("No data yet")
        assert driver.find_element(By.CSS_SELECTOR, "#chart-wake-time .chart-empty") \
            .is_displayed()
        assert driver.find_element(By.ID, "chart-wakes").get_attribute("data-points") == "0"

        # The burst: every box frozen and woken, four times over, through the API.
        rounds = 4
        for _ in range(rounds):
            for box in boxes:
                assert api.post(f"/v1/boxes/{box}/freeze").status_code == 200
            for box in boxes:
                r = api.post(f"/v1/boxes/{box}/wake")
                assert r.status_code == 200 and r.json()["state"] == "running", r.text
        woken = rounds * len(boxes)
        history = api.get("/v1/stats/history?hours=1").json()
        assert sum(history["wakes"]["count"]) == woken, history["wakes"]
        # The worker samples once a minute (and once at start, before these boxes were made):
        # wait for the first sample after the burst.
        burst_end, deadline = time.time(), time.monotonic() + 75
        while (running := _running_sampled_after(api, burst_end)) is None:
            assert time.monotonic() < deadline, "no minute sample in 75 s"
            time.sleep(2)
        assert running == len(boxes)

        # A window button fetches at once (the page also polls every 15 s, and may have drawn
        # the 6 h window part-way through the burst).
        driver.find_element(By.CSS_SELECTOR, '#charts-section button[data-hours="1"]').click()
        wait.until(lambda d: d.execute_script(
            "const c = window.BurrowCharts.charts['chart-wakes'];"
            "return c !== undefined && c.data[0].length === 60"
            "  && c.data[1].reduce((a, b) => a + b, 0) === arguments[0];", woken),
            "the 1 h window never drew the burst's wakes")
        for chart in SERIES_COLOURS:
            wait.until(lambda d, c=chart: int(d.find_element(By.ID, c)
                                              .get_attribute("data-points") or 0) > 0,
                       f"{chart} drew no data")
            assert not driver.find_element(By.CSS_SELECTOR, f"#{chart} .chart-empty") \
                .is_displayed()
        drawn = driver.execute_script(
            "const c = window.BurrowCharts.charts;"
            "return {wakes: c['chart-wakes'].data[1].reduce((a, b) => a + (b || 0), 0),"
            "        minutes: c['chart-wakes'].data[0].length,"
            "        p99: c['chart-wake-time'].data[2].filter((v) => v !== null).length,"
            "        series: c['chart-boxes'].series.map((s) => s.label),"
            "        boxes: c['chart-boxes'].data};")
        assert drawn["wakes"] == woken and drawn["minutes"] == 60 and drawn["p99"] >= 1, drawn
        assert drawn["boxes"][drawn["series"].index("running")][-1] == len(boxes), drawn
        for chart, colours in SERIES_COLOURS.items():
            counts = driver.execute_script(COUNT_PIXELS, chart, colours)
            assert counts is not None and all(n > 0 for n in counts), (chart, counts)
        # the legend names the series and, without the pointer over the chart, their newest
        legend = driver.find_element(By.CSS_SELECTOR, "#chart-wake-time .u-legend").text.lower()
        assert "p50 ms" in legend and "p99 ms" in legend and "\u2013" not in legend, legend
        assert "last 1 h" in driver.find_element(By.ID, "charts-status").text
        # the charts fit the page (they follow its width: no sideways scrolling)
        assert driver.execute_script("const e = document.documentElement;"
                                     "return e.scrollWidth <= e.clientWidth"), "page overflows"
        # the library and the charts loaded under the page's CSP: no script error, no refusal
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == [], errors

        ARTIFACTS.mkdir(exist_ok=True)
        driver.execute_script("document.getElementById('charts-section').scrollIntoView()")
        driver.save_screenshot(str(CHARTS_SCREENSHOT))
        shot = True
    finally:
        if not shot:
            ARTIFACTS.mkdir(exist_ok=True)
            driver.save_screenshot(str(CHARTS_SCREENSHOT))
        api.close()

