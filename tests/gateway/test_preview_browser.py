"""A box's web app, a background process that restarts on wake, seen through its preview URL
in a real headless Chromium, against a real `burrow serve`: the token once, then the cookie; a
WebSocket from the page; the dashboard's session out of the page's reach; a frozen box woken by
the next page load, whose request waits until the app listens again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import OPERATOR_KEY
from tests.gateway.test_dashboard import ARTIFACTS, browser
from tests.previews import APP
from tests.served import Served, free_port, stop_and_check

__all__ = ["browser"]  # the fixture, shared with the dashboard's test
SCREENSHOT = ARTIFACTS / "preview.png"

# Run in the preview page: what a page of the box can do with the dashboard's session.
TRY_THE_API = """
const [api, done] = arguments;
const tries = {};
const attempt = async (name, init) => {
  try {
    const r = await fetch(api + '/v1/tenants', init);
    tries[name] = 'status ' + r.status + (r.type === 'opaque' ? ' opaque' : '');
  } catch (e) { tries[name] = 'blocked'; }
};
await attempt('with the header', {credentials: 'include',
                                  headers: {'X-Burrow-Dashboard': '1'}});
await attempt('no-cors', {credentials: 'include', mode: 'no-cors'});
const echo = await (await fetch('echo')).json();
done({tries, cookie: document.cookie, boxSaw: echo.headers});
"""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    server = Served(tmp_path / "data",
                    env={"BURROW_PREVIEW_LISTEN": f"127.0.0.1:{free_port()}"}).start()
    yield server
    stop_and_check(server)


def _page_shows(driver: WebDriver, wait: WebDriverWait[WebDriver]) -> None:
    wait.until(ec.text_to_be_present_in_element((By.ID, "hello"), "hello from the box"),
               "the box's page did not show")


@pytest.mark.browser
@pytest.mark.timeout(300)
def test_a_box_app_through_its_preview_url_in_chromium(served: Served,
                                                       browser: WebDriver) -> None:
    driver = browser
    api = httpx.Client(base_url=served.url, headers=served.operator, timeout=120)
    r = api.post("/v1/tenants", json={"id": "acme"})
    tenant = {"Authorization": f"Bearer {r.json()['api_key']}"}
    box = api.post("/v1/boxes", json={}, headers=tenant).json()["id"]

    r = api.put(f"/v1/boxes/{box}/files", params={"path": "/workspace/preview_app.py"},
                content=APP, headers=tenant)
    assert r.status_code == 204, r.text
    r = api.post(f"/v1/boxes/{box}/processes", headers=tenant,
                 json={"command": ["python3", "/workspace/preview_app.py", "8000"],
                       "restart": "on-wake"})
    assert r.status_code == 201 and r.json()["state"] == "running", r.text
    app = r.json()["id"]
    opened = api.post(f"/v1/boxes/{box}/ports", json={"port": 8000}, headers=tenant).json()
    url, token = opened["url"], opened["token"]
    assert not url.startswith(served.url)  # an origin of its own
    wait = WebDriverWait(driver, 60)
    shot = False
    try:
        # The operator is signed in to the dashboard in this browser.
        driver.get(f"{served.url}/dashboard")
        wait.until(ec.visibility_of_element_located((By.ID, "key"))).send_keys(OPERATOR_KEY)
        driver.find_element(By.ID, "login-submit").click()
        wait.until(ec.visibility_of_element_located((By.ID, "logout")))
        assert any(c["name"] == "burrow_session" for c in driver.get_cookies())

        driver.get(url)
        assert driver.title == "401 Unauthorized" and "token" in driver.page_source

        driver.get(f"{url}?token={token}")
        _page_shows(driver, wait)
        assert driver.current_url == url  # the token left the address bar
        wait.until(ec.text_to_be_present_in_element((By.ID, "ws"), "ws:echo: ping from the page"),
                   "the page's WebSocket echo did not come back")

        seen = driver.execute_async_script(TRY_THE_API, served.url)
        assert "burrow" not in seen["cookie"], seen  # neither session nor preview cookie
        box_cookies = dict(seen["boxSaw"]).get("cookie", "")
        assert "burrow" not in box_cookies, box_cookies
        # The dashboard's API refuses the page: its cookie without the header is no session,
        # and the header makes the browser ask first (CORS), which the API does not allow.
        assert seen["tries"]["with the header"] == "blocked", seen
        assert seen["tries"]["no-cors"] in ("status 0 opaque", "blocked"), seen

        driver.get(url)  # the cookie alone
        _page_shows(driver, wait)

        r = api.post(f"/v1/boxes/{box}/freeze", headers=tenant)
        assert r.json()["state"] == "frozen"

        # The next page load wakes the box, which starts the app again (restart: on-wake); the
        # request waits for its port.
        driver.get(url)
        _page_shows(driver, wait)
        again = api.get(f"/v1/boxes/{box}/processes/{app}", headers=tenant).json()
        assert again["state"] == "running" and again["id"] == app, again
        ARTIFACTS.mkdir(exist_ok=True)
        driver.save_screenshot(str(SCREENSHOT))
        shot = True
    finally:
        if not shot:
            ARTIFACTS.mkdir(exist_ok=True)
            driver.save_screenshot(str(SCREENSHOT))
        api.close()
