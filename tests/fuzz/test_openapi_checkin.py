"""Schemathesis against the checkin service's OpenAPI: no 5xx, every error in the contract's shape.

Operations: scans, devices, attendance, snapshots. The tests themselves are fuzzing.service_tests.
"""

from __future__ import annotations

import pytest
from fuzzing import service_tests

from checkin.api import router

pytestmark = pytest.mark.timeout(240)

globals().update(service_tests("checkin", router))
