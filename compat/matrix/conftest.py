"""Loads the shared compat plugin (compat/python/cairn_compat.py) once per pytest run."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

import cairn_compat  # noqa: E402


def pytest_configure(config):
    if not config.pluginmanager.is_registered(cairn_compat):
        config.pluginmanager.register(cairn_compat, "cairn_compat")
