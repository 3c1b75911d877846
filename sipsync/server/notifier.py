"""The event framework (RFC 6665): SUBSCRIBE in, NOTIFY out, for the packages in
:mod:`sipsync.server.packages` (message-summary for voicemail lamps, dialog for busy lamps).

A new SUBSCRIBE (no To tag), in this order:

1. 489 Bad Event (``Allow-Events`` lists what is offered) when the Event header names no package
   of ours -- checked first, as it needs no account: a phone asking for presence is told at once;
2. 407 challenge, 403 bad credentials / disabled / password change required (the Authenticator,
   as for INVITE), 403 ``from_mismatch`` when From is not the authenticated user;
3. 400 without a Contact (there would be nowhere to send the NOTIFYs);
4. Expires: none -> the package's default (3600 s); below ``subscribe_min_expires`` -> 423 with
   Min-Expires; above ``subscribe_max_expires`` -> that maximum; 0 -> a fetch (200, one NOTIFY
   with the state and ``terminated``, nothing kept);
5. the target, from the Request-URI user (the To user when the Request-URI has none), read as an
   extension of the subscriber's customer, else as a username: message-summary only for the
   subscriber's own mailbox (403 ``mailbox_not_own``); dialog only for an extension of the same
   customer (403 ``watch_other_customer`` / ``watch_unknown_target``, the same words on the wire);
6. 403 ``too_many_subscriptions`` beyond ``max_subscriptions`` per subscribing account;
7. 200 OK with our To tag, the granted Expires and our Contact, then the initial NOTIFY with the
   current state (``Subscription-State: active;expires=N``).

Inside the dialog (To tag): 481 when the subscription is unknown (expired, ended, or from before a
restart that lost it); a refresh gets 200 and a NOTIFY with the current state; ``Expires: 0`` gets
200 and the final NOTIFY ``terminated;reason=timeout``. In-dialog SUBSCRIBEs are not challenged:
as for the BYE of a call, knowing the dialog (Call-ID and two random tags) is the proof, and the
subscriber's contact may be refreshed but never its account or target.

NOTIFYs are client transactions of the proxy (retransmitted per Timer E over UDP); a subscriber
that answers 481, or does not answer at all (Timer F, a transport failure), loses the subscription
(no further NOTIFY). A subscription that expires gets ``terminated;reason=timeout``; one whose
target account is removed ``terminated;reason=noresource``; one whose subscriber is removed or
disabled, or whose target moved to another customer, ``terminated;reason=rejected``.

Persistence: every subscription's state (dialog, route, flow, expiry, and the CSeq and
dialog-info version of the last NOTIFY) is queued into the store's ``subscriptions`` table when
it is created or refreshed, and the CSeq and version again by :meth:`Notifier.save` before the
node's next housekeeping flush (at most every half second, one row per subscription however many
NOTIFYs it got), and written with the next group commit. At start-up the live ones are restored
with their CSeq and version moved on by :data:`RESTART_MARGIN` (NOTIFYs sent after the last
commit before a crash must not be repeated with the same numbers). Over TCP the flow is gone
after a restart: the first NOTIFY then fails and the subscription ends, and the phone subscribes
again on its next refresh.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sipsync.server.causes import Cause, Reply, reject
from sipsync.server.packages import (
    ALLOW_EVENTS,
    DIALOG,
    MESSAGE_SUMMARY,
    PACKAGES,
    DialogView,
    dialog_info,
    message_summary,
)
from sipsync.server.subscriptions import Subscription, SubscriptionTable
from sipsync.sip.errors import SipParseError
from sipsync.sip.message import Headers, Request
from sipsync.sip.uri import NameAddr

if TYPE_CHECKING:  # pragma: no cover
    from sipsync.server.accounts import Account, AccountTable
    from sipsync.server.auth import Authenticator
    from sipsync.server.calls import Call, CallTable
    from sipsync.server.config import ServiceConfig
    from sipsync.server.proxy import Hop, Proxy
    from sipsync.server.store import LocalStore
    from sipsync.sip.transaction import ServerTransaction

__all__ = ["ALLOW_EVENTS", "Notifier", "RESTART_MARGIN"]

log = logging.getLogger("sipsync.notifier")

RESTART_MARGIN = 1000


@dataclass(slots=True, eq=False)
class _Expiry:
    """A subscription's expiry, in the proxy's timers."""

    notifier: Notifier
    subscription: Subscription

    def on_timer(self, name: str, now: float) -> list:
        self.notifier.expire(self.subscription)
        return []


class Notifier:
    def __init__(
        self,
        *,
        config: ServiceConfig,
        authenticator: Authenticator,
        accounts: AccountTable,
        calls: CallTable,
        store: LocalStore,
        proxy: Proxy,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._auth = authenticator
        self._accounts = accounts
        self._store = store
        self._proxy = proxy
        self._clock = clock
        self.table = SubscriptionTable()
        # the calls of each extension, as its busy lamp shows them: aor -> (call-id, direction) -> view
        self._dialogs: dict[str, dict[tuple[str, str], DialogView]] = {}
        self.notifies_sent = 0
        self._unsaved: dict[str, Subscription] = {}  # notified since the last save()
        accounts.listeners.append(self.account_changed)
        calls.observer = self.call_changed
        proxy.attach_notifier(self)

    # --- start-up -------------------------------------------------------------------------------

    def restore(self) -> int:
        """Take up the subscriptions the store holds (the expired ones are dropped); returns how many."""
        now = self._clock()
        for state in self._store.load_subscriptions():
            try:
                subscription = Subscription.from_state(state)
            except (KeyError, TypeError, ValueError, IndexError):
                log.warning("dropped an unreadable stored subscription: %r", state.get("id"))
                if isinstance(state.get("id"), str):
                    self._store.delete_subscription(state["id"])
                continue
            if subscription.expires_at <= now:
                self._store.delete_subscription(subscription.id)
                continue
            subscription.cseq += RESTART_MARGIN
            subscription.version += RESTART_MARGIN
            self.table.add(subscription)
            self._arm(subscription, now)  # and queued with the margin applied
        return len(self.table)

    # --- SUBSCRIBE --------------------------------------------------------------------------------

    def on_subscribe(self, request: Request, txn: ServerTransaction) -> None:
        event = _parse_event(request.headers.get("Event"))
        package = PACKAGES.get(event[0]) if event is not None else None
        if request.to.tag is not None:
            self._in_dialog(request, txn, event)
            return
        if event is None or package is None:
            self._refuse(
                txn,
                reject(
                    Cause.BAD_EVENT,
                    headers=[("Allow-Events", ALLOW_EVENTS)],
                    detail={"event": event[0] if event else None},
                ),
            )
            return
        outcome = self._auth.authenticate(request, txn.destination.source, proxy=True)
        if isinstance(outcome, Reply):
            self._refuse(txn, outcome)
            return
        account: Account = outcome
        aor = account.aor
        if request.from_.uri.user != account.username:
            self._refuse(
                txn, reject(Cause.FROM_MISMATCH, account=aor, detail={"from": str(request.from_.uri)})
            )
            return
        contacts = request.contacts
        if not contacts:
            self._refuse(
                txn, reject(Cause.BAD_CONTACT, account=aor, detail={"error": "SUBSCRIBE without a Contact"})
            )
            return
        expires = self._granted(request, package.default_expires)
        if expires is None:
            self._refuse(
                txn,
                reject(
                    Cause.SUBSCRIPTION_TOO_BRIEF,
                    account=aor,
                    headers=[("Min-Expires", str(self._config.subscribe_min_expires))],
                ),
            )
            return
        target, refusal = self._target(request, account, package.name)
        if refusal is not None:
            self._refuse(txn, refusal)
            return
        assert target is not None
        if expires and self.table.count_held_by(aor) >= self._config.max_subscriptions:
            limit = self._config.max_subscriptions
            self._refuse(txn, reject(Cause.TOO_MANY_SUBSCRIPTIONS, account=aor, detail={"limit": limit}))
            return
        now = self._clock()
        hop = txn.destination
        subscription = Subscription(
            id=secrets.token_hex(8),
            event=package.name,
            event_id=event[1],  # type: ignore[index]
            subscriber=aor,
            target=target.aor,
            call_id=request.call_id,
            local_tag=secrets.token_hex(6),
            remote_tag=request.from_.tag or "",
            local=request.headers.get("To") or "",
            remote=request.headers.get("From") or "",
            contact=str(contacts[0].uri),
            source=hop.source or hop.address,
            transport=hop.transport,
            expires_at=now + expires,
            routes=tuple(request.headers.get_all("Record-Route")),
            remote_cseq=request.cseq.seq,
            created_at=now,
        )
        subscription.local = f"{subscription.local};tag={subscription.local_tag}"
        self._accepted(txn, subscription, expires)
        if expires == 0:  # a fetch: the state once, nothing kept
            self._notify(subscription, terminated="timeout")
            return
        self.table.add(subscription)
        self._arm(subscription, now)
        self._notify(subscription)

    def _in_dialog(
        self, request: Request, txn: ServerTransaction, event: tuple[str, str | None] | None
    ) -> None:
        subscription = None
        if event is not None:
            subscription = self.table.in_dialog(request.call_id, request.to.tag or "", event[0], event[1])
        if subscription is None or subscription.remote_tag != request.from_.tag:
            self._refuse(
                txn, reject(Cause.NO_SUCH_SUBSCRIPTION, detail={"event": event[0] if event else None})
            )
            return
        if request.cseq.seq <= subscription.remote_cseq:
            self._refuse(txn, reject(Cause.OUT_OF_ORDER, account=subscription.subscriber))
            return
        subscription.remote_cseq = request.cseq.seq
        package = PACKAGES[subscription.event]
        expires = self._granted(request, package.default_expires)
        if expires is None:
            self._refuse(
                txn,
                reject(
                    Cause.SUBSCRIPTION_TOO_BRIEF,
                    account=subscription.subscriber,
                    headers=[("Min-Expires", str(self._config.subscribe_min_expires))],
                ),
            )
            return
        try:
            contacts = request.contacts
        except SipParseError:
            contacts = []
        if contacts:  # a target refresh (RFC 6665 4.1.2.1)
            subscription.contact = str(contacts[0].uri)
        now = self._clock()
        subscription.expires_at = now + expires
        self._accepted(txn, subscription, expires)
        if expires == 0:
            self._end(subscription, "timeout")
            return
        self._arm(subscription, now)
        self._notify(subscription)

    def _accepted(self, txn: ServerTransaction, subscription: Subscription, expires: int) -> None:
        headers = [("Expires", str(expires)), ("Contact", self._proxy.contact(subscription.transport))]
        self._proxy.answer(txn, 200, None, headers, to_tag=subscription.local_tag)

    def _granted(self, request: Request, default: int) -> int | None:
        """The subscription's duration: the asked one capped, 0 for 0; None when too brief."""
        asked = request.expires
        if asked is None:
            asked = default
        if asked == 0:
            return 0
        if asked < self._config.subscribe_min_expires:
            return None
        return min(asked, self._config.subscribe_max_expires)

    def _target(self, request: Request, account: Account, event: str) -> tuple[Account | None, Reply | None]:
        user = request.uri.user or request.to.uri.user
        aor = account.aor
        if not user:
            return account, None
        target = self._accounts.by_extension(account.customer, user)
        if target is None:
            target = self._accounts.get(user, account.realm)
        if event == MESSAGE_SUMMARY:
            if target is not account:
                return None, reject(Cause.MAILBOX_NOT_OWN, account=aor, detail={"target": user})
            return account, None
        if target is None:
            return None, reject(Cause.WATCH_UNKNOWN_TARGET, account=aor, detail={"target": user})
        if target.customer != account.customer:
            return None, reject(Cause.WATCH_OTHER_CUSTOMER, account=aor, detail={"target": user})
        return target, None

    def _refuse(self, txn: ServerTransaction, reply: Reply) -> None:
        self._proxy.refuse(txn, reply)

    # --- NOTIFY -----------------------------------------------------------------------------------

    def _notify(self, subscription: Subscription, *, terminated: str | None = None) -> None:
        """Send the current state to ``subscription`` (``terminated``: the final NOTIFY, with that
        reason)."""
        now = self._clock()
        package = PACKAGES[subscription.event]
        if terminated is not None:
            state = f"terminated;reason={terminated}"
        else:
            state = f"active;expires={subscription.expires_in(now)}"
        subscription.cseq += 1
        subscription.version += 1
        body = self._body(subscription)
        hop = self._hop(subscription)
        if hop is None:
            log.info("no way to reach %s for subscription %s: dropped", subscription.contact, subscription.id)
            self._drop(subscription)
            return
        event = subscription.event
        if subscription.event_id is not None:
            event = f"{event};id={subscription.event_id}"
        contact = self._proxy.contact(subscription.transport)
        headers = Headers.from_trusted(
            [
                ("Via", self._proxy.via(hop.transport)),
                ("Max-Forwards", "70"),
                *(("Route", route) for route in subscription.routes),
                ("From", subscription.local),
                ("To", subscription.remote),
                ("Call-ID", subscription.call_id),
                ("CSeq", f"{subscription.cseq} NOTIFY"),
                ("Contact", contact),
                ("Event", event),
                ("Subscription-State", state),
                ("Content-Type", package.content_type),
                ("User-Agent", self._config.server_header),
            ]
        )
        request = Request("NOTIFY", subscription.contact, headers, body)  # a URI parsed at SUBSCRIBE
        if terminated is None and self.table.get(subscription.id) is subscription:
            self._unsaved[subscription.id] = subscription  # CSeq and version: see save()
        subscription_id, cseq = subscription.id, subscription.cseq
        self.notifies_sent += 1
        self._proxy.send_request(request, hop, lambda status: self._answered(subscription_id, cseq, status))

    def _answered(self, subscription_id: str, cseq: int, status: int | None) -> None:
        subscription = self.table.get(subscription_id)
        if subscription is None:
            return
        if status is None or status == 481:
            log.info(
                "subscription %s of %s ended: NOTIFY %d %s",
                subscription_id, subscription.subscriber, cseq, "unanswered" if status is None else "481",
            )  # fmt: skip
            self._drop(subscription)

    def _body(self, subscription: Subscription) -> bytes:
        account = self._account(subscription.target)
        if subscription.event == MESSAGE_SUMMARY:
            new, old = account.mailbox if account is not None else (0, 0)
            return message_summary(f"sip:{subscription.target}", new, old)
        views = list(self._dialogs.get(subscription.target, {}).values())
        dnd = account.dnd if account is not None else False
        return dialog_info(f"sip:{subscription.target}", subscription.version, views, dnd=dnd)

    def _hop(self, subscription: Subscription) -> Hop | None:
        if subscription.routes:
            try:
                return self._proxy.hop_for_uri(NameAddr.parse(subscription.routes[0], "Route").uri)
            except SipParseError:
                return None
        return self._proxy.flow_hop(subscription.source, subscription.transport)

    def _notify_all(self, event: str, target: str) -> None:
        for subscription in self.table.watching(event, target):
            self._notify(subscription)

    # --- the end of a subscription -------------------------------------------------------------

    def expire(self, subscription: Subscription) -> None:
        subscription.timer = None
        if self.table.get(subscription.id) is subscription:
            self._end(subscription, "timeout")

    def _end(self, subscription: Subscription, reason: str) -> None:
        """The final NOTIFY, and the subscription is gone."""
        self._drop(subscription)
        self._notify(subscription, terminated=reason)

    def _drop(self, subscription: Subscription) -> None:
        if subscription.timer is not None:
            self._proxy.layer.timers.cancel(subscription.timer, "expires")
            subscription.timer = None
        self._unsaved.pop(subscription.id, None)
        if self.table.remove(subscription):
            self._store.delete_subscription(subscription.id)

    def _arm(self, subscription: Subscription, now: float) -> None:
        if subscription.timer is None:
            subscription.timer = _Expiry(self, subscription)
        deadline = self._proxy.now() + max(0.0, subscription.expires_at - now)
        self._proxy.layer.timers.set(subscription.timer, "expires", deadline)
        self._persist(subscription)

    def _persist(self, subscription: Subscription) -> None:
        self._unsaved.pop(subscription.id, None)
        self._store.put_subscription(subscription.id, subscription.state())

    def save(self) -> None:
        """Queue the CSeq and version of every subscription notified since the last call (the
        node calls this before each housekeeping flush): one row per subscription however many
        NOTIFYs it got meanwhile, and :data:`RESTART_MARGIN` covers what a crash loses."""
        unsaved, self._unsaved = self._unsaved, {}
        for subscription in unsaved.values():
            if self.table.get(subscription.id) is subscription:
                self._store.put_subscription(subscription.id, subscription.state())

    # --- what changes the state ----------------------------------------------------------------

    def account_changed(self, old: Account | None, new: Account | None) -> None:
        """A provisioning push: mailbox counts, do-not-disturb, removal, disabling, a move."""
        if new is None:
            if old is not None:
                for subscription in self.table.watching(MESSAGE_SUMMARY, old.aor) + self.table.watching(
                    DIALOG, old.aor
                ):
                    self._end(subscription, "noresource")
                for subscription in self.table.held_by(old.aor):
                    self._end(subscription, "rejected")
            return
        if not new.enabled:
            for subscription in self.table.held_by(new.aor):
                self._end(subscription, "rejected")
        if old is None:
            return
        if old.customer != new.customer:  # busy lamps never cross customers, before or after a move
            for subscription in self.table.watching(DIALOG, new.aor):
                if subscription.subscriber != new.aor:
                    self._end(subscription, "rejected")
            for subscription in self.table.held_by(new.aor):
                target = self._account(subscription.target)
                if subscription.event == DIALOG and (target is None or target.customer != new.customer):
                    self._end(subscription, "rejected")
        if old.mailbox != new.mailbox:
            self._notify_all(MESSAGE_SUMMARY, new.aor)
        if old.dnd != new.dnd:
            self._notify_all(DIALOG, new.aor)

    def call_changed(self, call: Call, state: str) -> None:
        """A call through the proxy moved on: both parties' busy lamps follow it."""
        if call.callee:
            callee = f"sip:{call.callee}"
        else:
            callee = f"sip:{call.number or call.dialled}@{self._config.realm}"
        caller = f"sip:{call.account}"
        parties = ((call.account, "initiator", call.caller_tag, call.callee_tag, callee),
                   (call.callee, "recipient", call.callee_tag, call.caller_tag, caller))  # fmt: skip
        for aor, direction, local_tag, remote_tag, remote in parties:
            if aor is None:
                continue
            views = self._dialogs.setdefault(aor, {})
            key = (call.call_id, direction)
            view = views.get(key)
            if view is None:
                view = views[key] = DialogView(call.call_id, direction, state)
            view.state = state
            view.local_tag, view.remote_tag, view.remote = local_tag, remote_tag, remote
            self._notify_all(DIALOG, aor)
            if state == "terminated":
                del views[key]
                if not views:
                    del self._dialogs[aor]

    # --- reading --------------------------------------------------------------------------------

    def involving(self, aor: str) -> list[Subscription]:
        return self.table.involving(aor)

    def _account(self, aor: str) -> Account | None:
        username, _, realm = aor.rpartition("@")
        return self._accounts.get(username, realm)


def _parse_event(value: str | None) -> tuple[str, str | None] | None:
    """``Event: dialog;id=7`` -> ("dialog", "7"); None when missing or empty."""
    if value is None:
        return None
    name, _, params = value.partition(";")
    name = name.strip().lower()
    if not name:
        return None
    event_id = None
    for param in params.split(";"):
        key, _, val = param.partition("=")
        if key.strip().lower() == "id":
            event_id = val.strip()
    return name, event_id
