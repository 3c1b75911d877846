"""Fixtures for the portal's provisioning-sync tests (fake nodes, sync settings)."""

import pytest

from tests.sipsync.fakenode import SECRET, FakeNode


@pytest.fixture
def fake_node():
    with FakeNode() as node:
        yield node


@pytest.fixture
def second_fake_node():
    with FakeNode() as node:
        yield node


@pytest.fixture
def sync_settings(settings, fake_node):
    """One fake node, its secret, and Celery running tasks in process."""
    settings.SIP_NODES = [fake_node.url]
    settings.SIP_CONTROL_SECRET = SECRET
    return settings
