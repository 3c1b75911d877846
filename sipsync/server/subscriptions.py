"""Event subscriptions held by the node (RFC 6665), indexed the ways the notifier needs them.

A :class:`Subscription` is one SUBSCRIBE dialog (this node the notifier, a phone the subscriber)
for one package and target. The table finds subscriptions by id, by dialog (a refresh), by
watched target (who to notify when a mailbox or an extension changes), and by subscriber (the
per-account limit, the control API). Its state round-trips through JSON for the local store.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Subscription", "SubscriptionTable"]

_STATE_FIELDS = (
    "id", "event", "event_id", "subscriber", "target", "call_id", "local_tag", "remote_tag",
    "local", "remote", "contact", "transport", "expires_at", "cseq", "version", "remote_cseq",
    "created_at",
)  # fmt: skip


@dataclass(slots=True, eq=False)
class Subscription:
    id: str
    event: str  # the package: message-summary or dialog
    event_id: str | None  # the Event header's id parameter, echoed in every NOTIFY
    subscriber: str  # the subscribing account's aor
    target: str  # the watched account's aor
    call_id: str
    local_tag: str  # ours (the To tag of the 200)
    remote_tag: str  # the subscriber's From tag
    local: str  # our side of the dialog as the subscriber addressed it: the To header, with our tag
    remote: str  # the subscriber's From header
    contact: str  # the subscriber's Contact URI: the NOTIFY's Request-URI
    source: tuple[str, int]  # the flow back to the subscriber
    transport: str
    expires_at: float  # epoch
    routes: tuple[str, ...] = ()  # Record-Route of the SUBSCRIBE: the NOTIFY's route set
    cseq: int = 0  # the CSeq of the last NOTIFY
    version: int = -1  # the dialog-info version of the last NOTIFY (the first is 0)
    remote_cseq: int = 0  # the highest CSeq of the subscriber's SUBSCRIBEs
    created_at: float = 0.0
    timer: Any = field(default=None, repr=False)  # the expiry timer in the proxy's timer heap

    @property
    def dialog_key(self) -> tuple[str, str, str, str | None]:
        return (self.call_id, self.local_tag, self.event, self.event_id)

    def expires_in(self, now: float) -> int:
        return max(0, round(self.expires_at - now))

    def state(self) -> dict[str, Any]:
        state = {name: getattr(self, name) for name in _STATE_FIELDS}
        state["source"] = list(self.source)
        state["routes"] = list(self.routes)
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Subscription:
        fields = {name: state[name] for name in _STATE_FIELDS}
        return cls(
            **fields, source=(state["source"][0], int(state["source"][1])), routes=tuple(state["routes"])
        )


class SubscriptionTable:
    def __init__(self) -> None:
        self._by_id: dict[str, Subscription] = {}
        self._by_dialog: dict[tuple[str, str, str, str | None], Subscription] = {}
        self._by_target: dict[tuple[str, str], dict[str, Subscription]] = {}
        self._by_subscriber: dict[str, dict[str, Subscription]] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[Subscription]:
        return iter(list(self._by_id.values()))

    def get(self, subscription_id: str) -> Subscription | None:
        return self._by_id.get(subscription_id)

    def in_dialog(
        self, call_id: str, local_tag: str, event: str, event_id: str | None
    ) -> Subscription | None:
        return self._by_dialog.get((call_id, local_tag, event, event_id))

    def watching(self, event: str, target: str) -> list[Subscription]:
        """The subscriptions to ``event`` of ``target`` (a snapshot)."""
        return list(self._by_target.get((event, target), {}).values())

    def held_by(self, subscriber: str) -> list[Subscription]:
        return list(self._by_subscriber.get(subscriber, {}).values())

    def count_held_by(self, subscriber: str) -> int:
        return len(self._by_subscriber.get(subscriber, ()))

    def involving(self, aor: str) -> list[Subscription]:
        """The subscriptions ``aor`` holds or is watched by."""
        found = {s.id: s for s in self.held_by(aor)}
        for (_, target), subscriptions in self._by_target.items():
            if target == aor:
                found.update(subscriptions)
        return sorted(found.values(), key=lambda s: (s.created_at, s.id))

    def add(self, subscription: Subscription) -> None:
        self._by_id[subscription.id] = subscription
        self._by_dialog[subscription.dialog_key] = subscription
        self._by_target.setdefault((subscription.event, subscription.target), {})[subscription.id] = (
            subscription
        )
        self._by_subscriber.setdefault(subscription.subscriber, {})[subscription.id] = subscription

    def remove(self, subscription: Subscription) -> bool:
        if self._by_id.get(subscription.id) is not subscription:
            return False
        del self._by_id[subscription.id]
        self._by_dialog.pop(subscription.dialog_key, None)
        _discard(self._by_target, (subscription.event, subscription.target), subscription.id)
        _discard(self._by_subscriber, subscription.subscriber, subscription.id)
        return True


def _discard(index: dict[Any, dict[str, Subscription]], key: Any, subscription_id: str) -> None:
    entries = index.get(key)
    if entries is None:
        return
    entries.pop(subscription_id, None)
    if not entries:
        del index[key]
