"""The teaching and debugging tools in headless Chromium: perturb, compare, statistics, classifier check, exports.

Uses the served app and browser fixtures of test_app_browser (a server of its own for this module).
"""
import io

import numpy as np
import pytest
import xarray as xr
from PIL import Image

from test_app_browser import (ACTION_TIMEOUT_MS, ENGINE_TIMEOUT_MS, STEPS_TIMEOUT_MS, browser, open_page,  # noqa: F401
                              served_app, wait_for_fields_or_message, wait_until)

pytestmark = pytest.mark.browser


def open_ks(open_page):  # noqa: F811 - the fixture, passed in by the test
    page, dashboard = open_page()
    assert wait_for_fields_or_message(page, "ks") == "fields", "the shipped KS pair did not load"
    return page, dashboard


def expand(page, card_class: str) -> None:
    """Open a collapsed sidebar card by its header button."""
    page.page.locator(f".{card_class} .card-header").first.click()


def test_perturb_button_raises_emulator_level(open_page):  # noqa: F811
    page, dashboard = open_ks(open_page)
    page.click("single-step")
    page.wait_for_step(1)

    page.page.locator(".perturb button").click()
    wait_until(lambda: dashboard.state.worker.snapshot().frame.perturbations, ACTION_TIMEOUT_MS / 1000,
               "the perturbation did not reach the worker")
    page.click("single-step")
    page.wait_for_step(2)

    frame = dashboard.state.worker.snapshot().frame
    emulator_levels = frame.history["emulator"]["level"][-1]
    assert emulator_levels.min() > dashboard.state.s_init
    assert page.console_errors == []


def test_click_on_profile_perturbs_locally(open_page):  # noqa: F811
    page, dashboard = open_ks(open_page)
    profile = page.page.locator(".profile-plot").first
    box = profile.bounding_box()
    # Click inside the plot frame, left of centre, away from the toolbar and the axes.
    page.page.mouse.click(box["x"] + 0.35 * box["width"], box["y"] + 0.5 * box["height"])

    wait_until(lambda: dashboard.state.worker.snapshot().frame.perturbations, ACTION_TIMEOUT_MS / 1000,
               "a click on the u(x) plot did not perturb")
    center = dashboard.state.worker.snapshot().frame.perturbations[-1].center
    assert len(center) == 1
    assert 0.0 < center[0] < 0.6


def test_statistics_and_classifier_tabs(open_page):  # noqa: F811
    page, dashboard = open_ks(open_page)
    page.click("start")
    page.wait_for_step(20)
    page.click("pause")

    expand(page, "analysis-card")
    page.page.locator(".compute-statistics button").click()
    page.page.locator(".check-classifier button").click()
    page.page.locator(".bk-tab", has_text="Statistics").click()
    page.page.wait_for_selector(".statistics-summary table", timeout=STEPS_TIMEOUT_MS)
    distance = page.page.locator(".statistics-row[data-run='truth'] .spectral-distance").inner_text()
    page.page.locator(".bk-tab", has_text="Classifier").click()
    page.page.wait_for_selector(".confusion-table", timeout=STEPS_TIMEOUT_MS)

    assert distance == "0.000"
    assert page.console_errors == []


def test_compare_variant_adds_run(open_page):  # noqa: F811
    page, dashboard = open_ks(open_page)
    expand(page, "compare-card")
    page.page.locator(".variant-a input").check()

    def variant_running():
        frame = dashboard.state.worker.snapshot().frame
        return frame is not None and "variant A" in frame.info.runs

    wait_until(variant_running, ENGINE_TIMEOUT_MS / 1000, "variant A did not start")
    page.page.wait_for_selector("text=Thermalized, variant A", timeout=ENGINE_TIMEOUT_MS)
    assert dashboard.state.worker.engine.run_settings("variant A").s_init == dashboard.state.compare.variant_a_s_init


def test_exports_download(open_page, tmp_path):  # noqa: F811
    page, dashboard = open_ks(open_page)
    page.click("start")
    page.wait_for_step(10)
    page.click("pause")
    expand(page, "export-card")

    files = {}
    for kind in ("png", "netcdf", "gif"):
        with page.page.expect_download(timeout=STEPS_TIMEOUT_MS) as download:
            page.page.locator(f".download-{kind} button, .download-{kind} a").first.click()
        path = tmp_path / download.value.suggested_filename
        download.value.save_as(path)
        files[kind] = path

    assert Image.open(files["png"]).format == "PNG"
    assert Image.open(files["gif"]).n_frames >= 2
    with xr.open_dataset(files["netcdf"], engine="h5netcdf") as dataset:
        assert "thermalized" in list(dataset["run"].values)
        assert np.isfinite(dataset["field"].sel(run="truth").values).all()
    assert page.console_errors == []
