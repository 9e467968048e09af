"""Fault test fixtures: each module kills or stops parts of a whole stack of its own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from journey import TEST_SETTINGS, running_stack

from plenary_stack.stack import EmbeddedStack, StackConfig


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    """A whole stack for the module, named after it; its document server makes each commit durable before answering."""
    fault = request.module.__name__.rpartition(".")[2].removeprefix("test_")
    config = StackConfig.isolated(tmp_path_factory.mktemp(fault), "fault" + fault.replace("_", ""), TEST_SETTINGS)
    config.sync_on_commit = True
    yield from running_stack(config)
