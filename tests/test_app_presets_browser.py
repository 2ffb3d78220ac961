"""Preset links and the shareable URL in headless Chromium: a link opens its set-up, the address follows the controls.

The tests use the server and browser fixtures of ``tests/test_app_browser.py``.
Each test opens a page at a link and reads the session's state next to what
the page shows.
"""
import urllib.parse

import pytest

from app.presets import CUSTOM, PRESETS
from test_app_browser import (ACTION_TIMEOUT_MS, ENGINE_TIMEOUT_MS, PAGE_TIMEOUT_MS, SYSTEM_LABELS, RecordedPage,
                              browser, served_app, wait_for_fields_or_message, wait_until)
from test_app_state import shipped_pair_exists

pytestmark = pytest.mark.browser

__all__ = ["browser", "served_app"]  # fixtures used by the tests below


@pytest.fixture
def open_link(served_app, browser):
    """Open pages at ``/main?<query>`` and return each with its session's dashboard."""
    url, dashboards = served_app
    pages = []

    def open_one(query: str):
        before = len(dashboards)
        page = RecordedPage(browser, f"{url}?{query}")
        wait_until(lambda: len(dashboards) > before, 30, "the page created no session")
        page.dashboard = dashboards[before]
        pages.append(page)
        return page, page.dashboard

    yield open_one
    for page in pages:
        # Pause first: a closed page's session lives on until the server finds it unused.
        page.dashboard.state.worker.pause()
        page.close()


def page_query(page) -> dict[str, str]:
    """Return the query of ``page.url`` after a round trip to the browser.

    The sync Playwright API processes the browser's events, such as the address
    changes that the dashboard makes, only while a call waits for the browser.
    Polling ``page.url`` alone would keep reading a stale address.
    """
    page.page.evaluate("window.location.search")
    return dict(urllib.parse.parse_qsl(urllib.parse.urlparse(page.page.url).query))


def slider_value(page, css_class: str) -> int:
    return int(page.page.locator(f".{css_class} .bk-slider-value").inner_text())


def test_preset_link_opens_preset(open_link):
    preset = PRESETS["emulator-drifts"]
    page, dashboard = open_link(f"preset={preset.key}")
    state = dashboard.state

    assert wait_for_fields_or_message(page, preset.system) == "fields"
    assert state.preset == preset.key
    assert (state.system, state.seed, state.s_init, state.s_stop) == (preset.system, preset.seed, preset.s_init,
                                                                       preset.s_stop)
    assert page.page.locator(".preset-select select").input_value() == preset.title
    assert page.page.locator(".system-select select").input_value() == SYSTEM_LABELS[preset.system]
    assert page.page.locator(".seed input").input_value() == str(preset.seed)
    assert slider_value(page, "s-init") == preset.s_init
    assert slider_value(page, "s-stop") == preset.s_stop
    explanation = page.page.locator(".preset-explanation p").first
    explanation.wait_for(timeout=PAGE_TIMEOUT_MS)
    assert preset.title in explanation.inner_text()
    assert page.console_errors == []


def test_s_init_change_updates_url(open_link):
    preset = PRESETS["thermalizer-stabilizes"]
    page, dashboard = open_link(f"preset={preset.key}")
    wait_for_fields_or_message(page, preset.system)
    wait_until(lambda: page_query(page).get("s_init") == str(preset.s_init), ACTION_TIMEOUT_MS / 1000,
               f"the address did not show the preset's s_init; it is {page.page.url}")

    handle = page.page.locator(".s-init .noUi-handle")
    handle.focus()
    for _ in range(3):
        handle.press("ArrowRight")

    expected = str(preset.s_init + 3)
    wait_until(lambda: page_query(page).get("s_init") == expected, ACTION_TIMEOUT_MS / 1000,
               f"the address did not follow the slider to s_init {expected}; it is {page.page.url}, the state's "
               f"s_init is {dashboard.state.s_init}, the page's {slider_value(page, 's-init')}")
    query = page_query(page)
    assert dashboard.state.s_init == preset.s_init + 3
    assert dashboard.state.preset == CUSTOM
    assert query["preset"] == CUSTOM
    assert query["seed"] == str(preset.seed)
    assert page.page.locator(".preset-select select").input_value() == "Custom settings"


def test_system_seed_link_opens_them(open_link):
    if not shipped_pair_exists("kolmogorov"):
        pytest.skip("the shipped Kolmogorov pair is not trained yet")
    page, dashboard = open_link("system=kolmogorov&seed=3")
    state = dashboard.state

    assert wait_for_fields_or_message(page, "kolmogorov") == "fields"

    assert state.system == "kolmogorov"
    assert state.seed == 3
    assert state.preset == CUSTOM
    assert state.worker.engine.seed == 3
    assert page.page.locator(".system-select select").input_value() == SYSTEM_LABELS["kolmogorov"]
    assert page.page.locator(".seed input").input_value() == "3"


def test_invalid_link_values_shown(open_link):
    page, dashboard = open_link("preset=emulator-drifts&s_init=50&seed=abc")
    state = dashboard.state

    wait_for_fields_or_message(page, "ks")
    page.page.wait_for_selector(".status-line :text('Rejected setting')", timeout=ENGINE_TIMEOUT_MS)
    wait_until(lambda: page_query(page).get("seed") == "0", ACTION_TIMEOUT_MS / 1000,
               f"the address still holds the invalid seed: {page.page.url}")

    assert "seed='abc'" in page.page.locator(".status-line .status").inner_text()
    assert (state.preset, state.s_init, state.seed) == (CUSTOM, 50, PRESETS["emulator-drifts"].seed)
    query = page_query(page)
    assert query["preset"] == CUSTOM
    assert query["s_init"] == "50"
