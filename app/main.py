"""Entry point of the dashboard: ``panel serve app/main.py [--args --models DIR]``.

Each browser session runs this script again and gets its own state, worker
thread and engine; loaded weights are shared between sessions. ``--models DIR``
adds the valid emulator/thermalizer pairs found in ``DIR`` to each system's
model menu and lists the rejected ones. The page loads every script, style and
font from the Panel server itself, so it works without internet access.
"""
from __future__ import annotations

import argparse
import logging
import sys

import panel as pn
from bokeh.settings import settings as bokeh_settings

from app.layout import RENDER_PERIOD_MS, Dashboard
from app.presets import apply_link_model, read_link, share_in_link
from app.state import DashboardState

logger = logging.getLogger("app")


def parse_server_arguments(argv: list[str]) -> argparse.Namespace:
    """Parse the arguments given to ``panel serve`` after ``--args``."""
    parser = argparse.ArgumentParser(prog="panel serve app/main.py --args",
                                     description="Thermalizer dashboard options.")
    parser.add_argument("--models", metavar="DIR", default=None,
                        help="folder of extra <name>-emulator/<name>-thermalizer checkpoint pairs to offer")
    return parser.parse_args(argv)


def create_dashboard(models_folder: str | None = None) -> Dashboard:
    """Build one session's dashboard and tie its worker and render callback to the session's lifetime.

    In a server session the page's URL query sets the initial controls (see :mod:`app.presets`) and
    then follows them, so the address bar always contains a link to the current set-up.
    """
    in_session = pn.state.curdoc is not None and pn.state.curdoc.session_context is not None
    link_values, link_problems = read_link(pn.state.location, DashboardState.param) if in_session else ({}, [])
    state = DashboardState(models_folder=models_folder, **link_values)
    if in_session:
        model_problem = apply_link_model(state, pn.state.location)
        link_problems += [model_problem] if model_problem else []
    if link_problems:
        state.error = " ".join(link_problems)
    dashboard = Dashboard(state)
    if in_session:
        share_in_link(state, pn.state.location)
        # Render only once the page has loaded. Until then Panel 1.9 defers its own model changes to a later
        # tick, but the plots' Bokeh sources change at once. The page could then receive the data of new
        # plots before the plots, and it rejected every later update ("reference ... isn't known").
        pn.state.onload(lambda: pn.state.add_periodic_callback(dashboard.refresh, period=RENDER_PERIOD_MS))
        # Do not wait for the worker's current step: this callback runs on the server's event loop.
        pn.state.on_session_destroyed(lambda session_context: state.close(timeout=0))
    return dashboard


def configure_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


# Serve Bokeh's and Panel's scripts and styles from this server, never from a CDN: ``panel serve`` does
# that by default, but ``pn.serve`` (as in the tests) otherwise links cdn.holoviz.org. The bootstrap
# design takes no web font, unlike FastListTemplate's theme (fonts.googleapis.com in Panel 1.9).
bokeh_settings.resources.set_value("server")
pn.extension(design="bootstrap", notifications=False)

if __name__.startswith("bokeh_app"):
    configure_logging()
    arguments = parse_server_arguments(sys.argv[1:])
    create_dashboard(arguments.models).servable(title="Thermalizer dashboard")
