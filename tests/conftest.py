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


# ---------------------------------------------------------------- lab fixtures
import secrets  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402

from tracer.lab.state import LabState  # noqa: E402

VM_LAB = "lab"
"""The shared VM lab keeps the default name so its domain is instance-00000347, as in the KVM seed."""


def unique_lab_name() -> str:
    return "t" + secrets.token_hex(3)[:5]


@pytest.fixture
def make_lab() -> Iterator[Callable[..., LabState]]:
    """Build labs with unique names; every one is torn down after the test, pass or fail."""
    from tracer.lab import runner

    made: list[str] = []

    def make(scenario: str, guest: str | None = None, name: str | None = None) -> LabState:
        name = name or unique_lab_name()
        made.append(name)
        return runner.up(scenario, name=name, guest=guest)

    yield make
    for name in made:
        runner.down(name)


@pytest.fixture(scope="session")
def vm_lab() -> Iterator[LabState]:
    """One booted libvirt/QEMU guest for every test that needs one (booting under TCG is slow)."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    from tracer.lab import runner

    state = runner.up("vm", name=VM_LAB, guest="vm")
    try:
        yield state
    finally:
        runner.down(VM_LAB)
