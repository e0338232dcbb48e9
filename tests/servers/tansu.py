"""Pytest plugin: one real Tansu broker per test session, a fresh topic per test.

Fixtures
--------
kafka_broker (session)
    A started :class:`local_stack.tansu.TansuBroker`; ``kafka_broker.bootstrap_servers``
    is its ``host:port``. Stopped at the end of the session.
topic_factory (function)
    ``topic_factory(partitions=1, suffix="")`` creates a topic with a unique name
    (derived from the test's name) and returns the name.
new_topic (function)
    One unique 3-partition topic.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator

import pytest

from local_stack.tansu import TansuBroker


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[TansuBroker]:
    """A Tansu broker (in-memory storage, free loopback port) shared by the whole session."""
    broker = TansuBroker(startup_timeout=30.0)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def topic_factory(kafka_broker: TansuBroker, request: pytest.FixtureRequest) -> Callable[..., str]:
    """Create uniquely named topics for the current test: ``topic_factory(partitions=1, suffix="")``."""
    base = re.sub(r"[^a-zA-Z0-9._-]+", "-", request.node.name)[:80].strip("-._") or "test"

    def create(partitions: int = 1, suffix: str = "") -> str:
        name = f"{base}{'-' + suffix if suffix else ''}-{uuid.uuid4().hex[:8]}"
        kafka_broker.create_topics([name], partitions=partitions)
        return name

    return create


@pytest.fixture
def new_topic(topic_factory: Callable[..., str]) -> str:
    """A fresh 3-partition topic for this test."""
    return topic_factory(partitions=3)
