"""baresip's voicemail lamp (its `mwi` module) against the real node: once registered, baresip
subscribes to its own message-summary; the counts pushed over the control interface reach it as
NOTIFYs (its MWI_NOTIFY events carry the body)."""

import time

import httpx
import pytest

from sipsync.server.provision import document_for_password
from tests.sipsync.interop.conftest import REALM
from tests.sipsync.interop.softphone.conftest import EXTENSIONS, PASSWORDS

TIMEOUT = 10.0


def subscriptions(node, aor: str) -> list[dict]:
    response = httpx.get(
        f"http://127.0.0.1:{node.control_port}/v1/subscriptions",
        params={"aor": aor},
        headers={"Authorization": f"Bearer {node.secret}"},
        timeout=5.0,
    )
    response.raise_for_status()
    return response.json()["subscriptions"]


def push_mailbox(node, user: str, version: int, new: int, old: int) -> None:
    document = document_for_password(
        user, REALM, PASSWORDS[user], version=version, extension=EXTENSIONS[user],
        mailbox={"new": new, "old": old},
    )  # fmt: skip
    response = httpx.put(
        f"http://127.0.0.1:{node.control_port}/v1/accounts/{user}@{REALM}",
        json=document,
        headers={"Authorization": f"Bearer {node.secret}"},
        timeout=5.0,
    )
    response.raise_for_status()
    assert response.json()["applied"] is True


@pytest.mark.softphone
def test_baresip_subscribes_to_its_mailbox_and_sees_the_counts(node, phone):
    alice = phone("alice", module="mwi.so")
    start = alice.mark()
    outcome = alice.register("alice", PASSWORDS["alice"], proxy=node.proxy, realm=REALM)
    assert outcome["type"] == "REGISTER_OK", outcome
    initial = alice.wait_event("MWI_NOTIFY", after=start, timeout=TIMEOUT)
    assert "Messages-Waiting: no" in initial.get("param", ""), initial
    deadline = time.monotonic() + TIMEOUT
    while not (held := subscriptions(node, f"alice@{REALM}")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [(s["event"], s["subscriber"], s["target"]) for s in held] == [
        ("message-summary", f"alice@{REALM}", f"alice@{REALM}")
    ]
    mark = alice.mark()
    push_mailbox(node, "alice", 2, new=2, old=7)
    changed = alice.wait_event("MWI_NOTIFY", after=mark, timeout=TIMEOUT)
    assert "Messages-Waiting: yes" in changed["param"] and "Voice-Message: 2/7 (0/0)" in changed["param"]
