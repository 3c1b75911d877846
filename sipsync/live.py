"""Live answers from the SIP nodes: what every node knows about one account right now.

Registrations and subscriptions live only on the nodes (the portal's database never holds them),
so the portal and the API ask each configured node when a page or request needs them. A node
that is slow or down is reported as such; the others still answer.
"""

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx

from sipsync.client import NodeClient, NodeError
from sipsync.outbox import node_urls

# An interactive lookup: a node that does not answer quickly is reported as unavailable.
NODE_TIMEOUT = httpx.Timeout(3.0, connect=1.0)


def node_client(url: str) -> NodeClient:
    """The client for one node (tests replace this to serve canned answers)."""
    return NodeClient(url, timeout=NODE_TIMEOUT)


@dataclass(frozen=True, slots=True)
class NodeAnswer:
    node: str
    ok: bool
    items: list[dict]
    error: str = ""


def registrations(aor: str) -> list[NodeAnswer]:
    """The account's registered contacts, per node."""
    return _ask_every_node(lambda node: node.registrations(aor))


def registrations_of(aors: list[str]) -> list[NodeAnswer]:
    """The registered contacts of several accounts (one request per node), per node."""
    return _ask_every_node(lambda node: node.registrations_of(aors))


def subscriptions(aor: str) -> list[NodeAnswer]:
    """Event subscriptions (MWI, BLF) the account holds or is watched by, per node."""
    return _ask_every_node(lambda node: node.subscriptions(aor))


def _ask_every_node(question: Callable[[NodeClient], list[dict]]) -> list[NodeAnswer]:
    urls = node_urls()

    def ask(url: str) -> NodeAnswer:
        try:
            with node_client(url) as node:
                return NodeAnswer(url, True, question(node))
        except NodeError as exc:
            return NodeAnswer(url, False, [], str(exc))

    if len(urls) < 2:
        return [ask(url) for url in urls]
    with ThreadPoolExecutor(max_workers=min(len(urls), 8)) as pool:
        return list(pool.map(ask, urls))


@dataclass(frozen=True, slots=True)
class RegistrationState:
    """Whether an account has phones registered, as far as the nodes that answered know."""

    contacts: int
    nodes_answered: int
    nodes: int

    @property
    def state(self) -> str:
        if self.contacts:
            return "registered"
        return "unknown" if self.nodes_answered == 0 else "unregistered"

    @property
    def label(self) -> str:
        if self.contacts:
            return f"Registered ({self.contacts} phone{'s' if self.contacts != 1 else ''})"
        if self.nodes_answered == 0:
            return "Status unavailable: the SIP service could not be reached"
        if self.nodes_answered < self.nodes:
            return f"Not registered on the {self.nodes_answered} of {self.nodes} nodes that answered"
        return "Not registered"


def registration_states(aors: list[str]) -> dict[str, RegistrationState]:
    """Per account (AOR): its registered contacts over every node, one request per node."""
    answers = registrations_of(aors) if aors else []
    answered = [answer for answer in answers if answer.ok]
    contacts: dict[str, set[str]] = {aor.lower(): set() for aor in aors}
    for answer in answered:
        for binding in answer.items:
            seen = contacts.get(str(binding.get("aor", "")).lower())
            if seen is not None:
                seen.add(str(binding.get("contact", "")))
    return {aor: RegistrationState(len(contacts[aor.lower()]), len(answered), len(answers)) for aor in aors}
