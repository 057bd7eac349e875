"""A test needs what it needs: when CI asks for every service (REQUIRE_SERVICES=1), a test whose
service or ../shared corpus is missing fails instead of skipping (issue 33). Every skip in the
suite goes through ``tests.conftest.require``; the only other skips are for optional command-line
tools (GNU gettext), each with a check that runs without them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests import conftest

TESTS = Path(__file__).resolve().parent
# Skips for a tool, not a service: the test beside each checks the same with polib.
TOOL_SKIPS = {("test_i18n.py", "msgfmt"), ("test_i18n.py", "xgettext")}


def test_a_missing_service_fails_when_ci_asks_for_every_service(monkeypatch):
    monkeypatch.setattr(conftest, "REQUIRE_SERVICES", True)
    with pytest.raises(pytest.fail.Exception, match="the shared corpus is not at"):
        conftest.require("the shared corpus is not at ../shared")
    conftest.require(None)  # nothing missing: nothing happens


def test_a_missing_service_skips_saying_why_otherwise(monkeypatch):
    monkeypatch.setattr(conftest, "REQUIRE_SERVICES", False)
    with pytest.raises(pytest.skip.Exception, match="Redis"):
        conftest.require("Redis at REDIS_URL does not answer")


def test_every_skip_in_the_suite_goes_through_require():
    found = []
    for path in sorted(TESTS.rglob("*.py")):
        if path.name in {"conftest.py", Path(__file__).name} and path.parent == TESTS:
            continue
        for line in path.read_text().splitlines():
            if re.search(r"pytest\.skip\(|skipif\(|importorskip\(|pytest\.mark\.skip\b", line):
                tool = re.search(r'which\("([a-z]+)"\)', line)
                if not (tool and (path.name, tool.group(1)) in TOOL_SKIPS):
                    found.append(f"{path.relative_to(TESTS)}: {line.strip()}")
    assert found == []

