"""Shared test plumbing: the `live` marker and the lab fixtures.

Live tests build real kernel objects and need root. On a developer machine without root they are
skipped; when CI is set they are required, so a CI run that would silently skip them fails instead.
"""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    live = [i for i in items if i.get_closest_marker("live") or i.get_closest_marker("vm")]
    if live and os.environ.get("CI"):
        raise pytest.UsageError(f"CI is set but not root: {len(live)} live tests would be skipped")
    for item in live:
        item.add_marker(pytest.mark.skip(reason="live test needs root"))
