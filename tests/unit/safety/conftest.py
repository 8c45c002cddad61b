"""One moderator per session: loads the cached head from artifacts/ (trains it first when missing)."""

from __future__ import annotations

import pytest

from chatstack.config import SafetySection


@pytest.fixture(scope="session")
def moderator():
    from chatstack.safety.moderator import Moderator

    return Moderator.from_config(SafetySection())
