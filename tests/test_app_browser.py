"""The served dashboard in headless Chromium: offline page, live stepping, live thresholds, systems, two sessions.

The app is served in this process with ``pn.serve`` on a free localhost port,
so the tests can read each session's state next to what the browser shows.
Chromium is Debian's, launched by path; nothing is downloaded.
"""
import pathlib
import shutil
import socket
import sys
import threading
import time
import traceback
import urllib.parse

import panel as pn
import pytest

from app.main import create_dashboard

pytestmark = pytest.mark.browser
playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = pathlib.Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run"]
REPOSITORY = pathlib.Path(__file__).resolve().parents[1]
ARTIFACTS = REPOSITORY / "test-artifacts"
DOCS_SCREENSHOT = REPOSITORY / "docs" / "screenshots" / "dashboard.png"
SYSTEM_LABELS = {"ks": "Kuramoto–Sivashinsky (1D)", "kolmogorov": "Kolmogorov flow (2D)", "qg": "Two-layer QG (2D)"}
#: Milliseconds to wait for the page, a built engine, or steps. Generous: CI runs on 2 shared cores,
#: and QG and Kolmogorov spin up their initial states before the first frame.
PAGE_TIMEOUT_MS = 120_000
ENGINE_TIMEOUT_MS = 180_000
STEPS_TIMEOUT_MS = 180_000
#: Clicks, key presses and element screenshots wait this long for a page whose renderer shares the CPU.
ACTION_TIMEOUT_MS = 90_000
LOCAL_HOSTS = {"127.0.0.1", "localhost"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(condition, timeout_s: float, message):
    """Poll ``condition`` until it returns a truthy value, then return it.

    On timeout, fail with ``message``, or with what ``message()`` returns then if it is callable.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(message() if callable(message) else message)
        time.sleep(0.1)


def rollout_thread_stacks() -> str:
    """Return the Python stacks of the session workers and the compute pool, to show where a stalled run waits."""
    frames = sys._current_frames()
    stacks = []
    for thread in threading.enumerate():
        if thread.name.startswith(("rollout-", "engine")) and thread.ident in frames:
            stacks.append(f"--- {thread.name}\n" + "".join(traceback.format_stack(frames[thread.ident])))
    return "\n".join(stacks)


def port_open(port: int) -> bool:
    """Return whether the server accepts connections; a plain connect creates no Panel session."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def served_app(tiny_models):
    """Serve the dashboard in a thread; yield its URL and the list of sessions' dashboards, newest last."""
    dashboards = []

    def new_session():
        dashboard = create_dashboard(str(tiny_models))
        dashboards.append(dashboard)
        return dashboard

    port = free_port()
    # A session counts as unused from its creation until its websocket connects, and on a loaded machine
    # that takes seconds. So the lifetime stays at Bokeh's default of 15 s, and only the check runs more often.
    server = pn.serve({"main": new_session}, address="127.0.0.1", port=port, threaded=True, show=False,
                      websocket_origin=[f"127.0.0.1:{port}"], title="Thermalizer dashboard",
                      unused_session_lifetime_milliseconds=15_000, check_unused_sessions_milliseconds=1_000)
    url = f"http://127.0.0.1:{port}/main"
    wait_until(lambda: port_open(port), 60, "the Panel server did not start")
    yield url, dashboards
    for dashboard in dashboards:
        dashboard.state.close()
    server.stop()


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium (run `make browser`)")
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class RecordedPage:
    """A page with its console errors, its requests to other hosts and its failed requests."""

    def __init__(self, browser, url):
        self.page = browser.new_page(viewport={"width": 1400, "height": 1200})
        self.page.set_default_timeout(ACTION_TIMEOUT_MS)
        self.dashboard = None
        self.console_errors = []
        self.foreign_requests = []
        self.failed_requests = []
        self.page.on("console", self.record_console)
        self.page.on("pageerror", lambda error: self.console_errors.append(f"page error: {error}"))
        self.page.on("request", self.record_request)
        self.page.on("requestfailed", lambda request: self.failed_requests.append(
            f"{request.url}: {request.failure}"))
        self.page.goto(url, timeout=PAGE_TIMEOUT_MS)
        self.page.wait_for_selector(".status-line", timeout=PAGE_TIMEOUT_MS)

    def record_console(self, message):
        if message.type == "error":
            self.console_errors.append(message.text)

    def record_request(self, request):
        parsed = urllib.parse.urlparse(request.url)
        if parsed.scheme in ("http", "https", "ws", "wss") and parsed.hostname not in LOCAL_HOSTS:
            self.foreign_requests.append(request.url)

    def step_count(self) -> int:
        counts = self.page.locator(".step-count")
        return int(counts.inner_text()) if counts.count() else -1

    def wait_for_step(self, minimum: int) -> int:
        return wait_until(lambda: self.step_count() >= minimum and self.step_count(), STEPS_TIMEOUT_MS / 1000,
                          lambda: f"the page did not reach step {minimum}; it shows step {self.step_count()}, "
                                  f"the server {self.server_side()}")

    def server_side(self) -> str:
        worker = self.dashboard.state.worker
        snapshot = worker.snapshot()
        step = snapshot.frame.step if snapshot.frame is not None else None
        status = self.page.locator(".status-line").first.inner_text() if self.page.locator(".status-line").count() else ""
        return (f"is at step {step}, running={worker.running}, thread alive={worker.alive}; the server's status "
                f"line: {self.dashboard.status.object!r}; the page's: {status!r}; render failures: "
                f"{self.dashboard.render_failures}; console errors: {self.console_errors}\n{rollout_thread_stacks()}")

    def click(self, css_class: str) -> None:
        self.page.locator(f".{css_class} button").click()

    def select_system(self, system: str) -> None:
        self.page.locator(".system-select select").select_option(label=SYSTEM_LABELS[system])

    def fields_image(self) -> bytes:
        """Return a PNG of the first field plot; clipped from the page, since it never stays still while running."""
        box = self.page.locator(".bk-Figure").first.bounding_box()
        return self.page.screenshot(clip=box)

    def close(self) -> None:
        if not self.page.is_closed():
            self.page.close()


@pytest.fixture
def open_page(served_app, browser):
    url, dashboards = served_app
    pages = []

    def open_one():
        before = len(dashboards)
        page = RecordedPage(browser, url)
        wait_until(lambda: len(dashboards) > before, 30, "the page created no session")
        page.dashboard = dashboards[before]
        pages.append(page)
        return page, dashboards[before]

    yield open_one
    for page in pages:
        # Pause first: a closed page's session lives on until the server finds it unused.
        page.dashboard.state.worker.pause()
        page.close()


def shipped_ks_or_tiny(page, dashboard):
    """Run the shipped KS pair, or the tiny untrained one from the models folder until it is trained."""
    if wait_for_fields_or_message(page, "ks") == "problem":
        page.page.locator(".model-select select").select_option(label="tiny-ks (models folder)")
        wait_until(lambda: dashboard.state.model.folder is not None, 30, "the model menu did not reach the state")
        assert wait_for_fields_or_message(page, "ks") == "fields"
    return dashboard


def wait_for_fields_or_message(page, system: str) -> str:
    """Wait until the page shows ``system``'s fields or its problem message; return "fields" or "problem"."""
    marker = page.page.locator(f".phase[data-system='{system}']:is([data-phase='fields'], [data-phase='problem'])")
    marker.wait_for(state="attached", timeout=ENGINE_TIMEOUT_MS)
    return marker.get_attribute("data-phase")


def test_page_loads_offline_without_errors(open_page):
    page, _ = open_page()
    wait_for_fields_or_message(page, "ks")
    page.page.wait_for_load_state("networkidle")

    assert page.foreign_requests == []
    assert page.failed_requests == []
    assert page.console_errors == []


def test_start_advances_steps_and_images(open_page):
    page, dashboard = open_page()
    shipped_ks_or_tiny(page, dashboard)
    start_step = page.step_count()
    before = page.fields_image()

    page.click("start")
    page.wait_for_step(start_step + 10)

    assert page.fields_image() != before
    assert dashboard.state.worker.running
    assert page.console_errors == []


def test_s_init_slider_changes_engine_threshold(open_page):
    page, dashboard = open_page()
    shipped_ks_or_tiny(page, dashboard)
    page.click("start")
    first_step = page.wait_for_step(5)
    initial = dashboard.state.s_init

    handle = page.page.locator(".s-init .noUi-handle")
    handle.focus()
    for _ in range(5):
        handle.press("ArrowRight")

    engine = dashboard.state.worker.engine
    wait_until(lambda: engine.settings.s_init == initial + 5, ACTION_TIMEOUT_MS / 1000, "the engine's s_init did not follow the slider")
    page.page.wait_for_selector(f".engine-s-init:text-is('{initial + 5}')", timeout=STEPS_TIMEOUT_MS)
    assert dashboard.state.worker.engine is engine, "the engine was rebuilt instead of updated"
    assert page.step_count() >= first_step, "the run restarted"


def test_two_pages_run_independently(open_page):
    first, first_dashboard = open_page()
    second, second_dashboard = open_page()
    shipped_ks_or_tiny(first, first_dashboard)
    shipped_ks_or_tiny(second, second_dashboard)
    second_step = second.step_count()

    first.click("start")
    first.wait_for_step(10)
    s_stop = second_dashboard.state.s_stop
    second.page.locator(".s-stop .noUi-handle").focus()
    second.page.locator(".s-stop .noUi-handle").press("ArrowLeft")

    second_engine = second_dashboard.state.worker.engine
    wait_until(lambda: second_engine.settings.s_stop == s_stop - 1, 30,
               "the second page's s_stop did not reach its engine")
    assert first_dashboard.state.worker.engine is not second_engine
    assert first_dashboard.state.worker.engine.settings.s_stop == s_stop
    assert second.step_count() == second_step
    assert not second_dashboard.state.worker.running


def test_closing_page_stops_worker(open_page):
    page, dashboard = open_page()
    shipped_ks_or_tiny(page, dashboard)
    page.click("start")
    page.wait_for_step(1)

    page.close()

    wait_until(lambda: not dashboard.state.worker.alive, 60, "the closed page's worker is still running")


@pytest.mark.parametrize("system", ["ks", "kolmogorov", "qg"])
def test_system_shows_fields_or_message(open_page, system):
    page, dashboard = open_page()
    if system != "ks":
        page.select_system(system)
        wait_until(lambda: dashboard.state.system == system, 30, "the system menu did not reach the state")
    outcome = wait_for_fields_or_message(page, system)
    if outcome == "fields":
        page.page.wait_for_selector("text=Truth (solver)", timeout=PAGE_TIMEOUT_MS)
        page.click("start")
        # Enough KS steps to fill part of the space-time diagrams for the screenshot; a 2D step is slow on CPU.
        page.wait_for_step(80 if system == "ks" else 1)
        page.click("pause")
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / f"dashboard-{system}.png"
    page.page.screenshot(path=str(screenshot), full_page=True)

    if outcome == "problem":
        message = page.page.locator(".problem-message p").first.inner_text()
        assert SYSTEM_LABELS[system] in message
        assert "checkpoint" in message.lower() or "could not start" in message.lower()
    elif system == "ks":
        DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(screenshot, DOCS_SCREENSHOT)
    assert page.console_errors == []
