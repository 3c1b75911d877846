"""The enforcement table of DESIGN.md applied to an authenticated initial INVITE.

:meth:`Policy.check` runs the checks in this order and stops at the first that refuses (the
codes and reason phrases live in :mod:`sipsync.server.causes`):

 1. (before this module) 407 challenge, 403 bad credentials / disabled / password change
    required -- the Authenticator, ``proxy=True``
 2. 403 the From user is not the authenticated username                    ``from_mismatch``
 3. 403 the customer is suspended or closed                                ``customer_suspended``
 4. 403 the caller is at its own ``max_calls``                             ``caller_too_many_calls``
 5. 404 the dialled number is not valid in the dial plan                   ``invalid_number``
 6. 404 the account's ``permissions`` do not include the call class        ``class_not_permitted``
 7. 503 the presented caller ID is not one the account may use             ``invalid_caller_id``
 8. calls to the trunk: 404 no rate for the destination (``no_rate``), 503 the available balance
    does not cover connect fee + first increment                           ``insufficient_funds``
 9. 488 no offered codec is assigned to the account (Warning 305)           ``codec_mismatch``
10. internal calls, about the callee: 302 ``forward_all`` (Contact: the target), 603 ``dnd``,
    486 at its ``max_calls``, 480 no registered contact

Funds (step 8): the available balance is the customer document's (``documents.get_customer``)
minus what calls in progress reserve (``calls.Reservations``) and minus what calls that ended on
this node since the last balance push cost (``CallTable.unsettled``). A customer without a
document is refused with 503 (nothing to check the call against); a customer whose ``rate_plan``
is null is not billed, so the check passes; a plan without a rate for the number is 404
``no_rate``. A call that passes gets a maximum duration (``Verdict.max_duration``: what the
available balance pays for at its rate, at most ``max_call_duration``) and reserves its cost
(``Verdict.reserve``); see :mod:`sipsync.server.rating` and :mod:`sipsync.server.calls`.

Identity: everything here is about the *authenticated* account. Headers a caller may add that
name somebody else -- ``Referred-By`` on the INVITE a transferee sends after a REFER, or a
``Referred-By``/``Replaces`` of any kind -- are never read: a transferred call is the
transferee's own call, checked, rated and billed as such, with the transferee's caller IDs.

Forward-all and do-not-disturb are checked before the callee's busy state: a forwarded or
do-not-disturb extension is not rung at all, so how many calls it has does not matter (a caller
should be forwarded, not told "busy", when the forwarding extension happens to be on a call).
``max_calls`` 0 means no limit, as ``max_contacts`` 0 does.

Caller ID (step 7): the identity presented is the P-Asserted-Identity user, else the
P-Preferred-Identity user, else the From display name if it is a number, else the From user if
it is a number other than the account's own username or extension. It is compared in E.164
form (the customer's country settings) with the account's ``caller_ids``; an account without
any may present only its ``default_caller_id``. Presenting nothing is fine: the call goes out
with the default caller ID (or the first allowed one), except that a call to the trunk from an
account with neither caller IDs nor a default is refused (there is no number to send).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Protocol

from sipsync.server.calls import CallTable
from sipsync.server.causes import Cause, Reply, reject
from sipsync.server.dialplan import CountrySettings, to_e164
from sipsync.server.rating import ZERO, Rate, RateIndex
from sipsync.server.routing import Destination, country_settings, resolve
from sipsync.sip.errors import SipParseError
from sipsync.sip.sdp import SessionDescription, filter_codecs, offered_codecs
from sipsync.sip.uri import NameAddr

if TYPE_CHECKING:  # pragma: no cover
    from sipsync.server.accounts import Account, AccountTable
    from sipsync.server.location import Binding, LocationService
    from sipsync.sip.message import Request

__all__ = ["Customers", "Policy", "Verdict"]


class Customers(Protocol):
    """What the policy reads about customers (``sipsync.server.documents.DocumentTable``)."""

    def get_customer(self, customer: str) -> dict[str, Any] | None: ...

    def rate_index(self, name: str) -> RateIndex | None: ...


class NoCustomers:
    """No customer documents at all (a node without the control interface)."""

    def get_customer(self, customer: str) -> dict[str, Any] | None:
        return None

    def rate_index(self, name: str) -> RateIndex | None:
        return None


@dataclass(init=False, slots=True)
class Verdict:
    """The outcome of :meth:`Policy.check`: a refusal (``reply``) or what to relay."""

    reply: Reply | None
    destination: Destination | None
    rate: Rate | None
    reserve: Decimal
    max_duration: int | None  # seconds the credit pays for (paid calls)
    caller_id: str | None  # E.164 (or as provisioned) identity to assert
    body: bytes | None  # the offer with unassigned codecs removed
    bindings: list[Binding]

    def __init__(self) -> None:  # written out for mypyc (see sipsync.native)
        self.reply = None
        self.destination = None
        self.rate = None
        self.reserve = ZERO
        self.max_duration = None
        self.caller_id = None
        self.body = None
        self.bindings = []


class Policy:
    def __init__(
        self,
        *,
        realm: str,
        accounts: AccountTable,
        location: LocationService,
        calls: CallTable,
        customers: Customers | None = None,
        clock: Callable[[], float] = time.time,
        max_call_duration: int = 7200,
    ) -> None:
        self._realm = realm
        self._max_call_duration = max_call_duration
        self._accounts = accounts
        self._location = location
        self._calls = calls
        self._customers: Customers = customers if customers is not None else NoCustomers()
        self._clock = clock

    def customer(self, account: Account) -> dict[str, Any] | None:
        return self._customers.get_customer(account.customer)

    def check(self, account: Account, request: Request) -> Verdict:
        aor = account.aor
        verdict = Verdict()

        def refuse(cause: Cause, **kwargs: Any) -> Verdict:
            verdict.reply = reject(cause, account=aor, **kwargs)
            return verdict

        if request.from_.uri.user != account.username:
            return refuse(Cause.FROM_MISMATCH, detail={"from": str(request.from_.uri)})
        customer = self.customer(account)
        if customer is not None and customer.get("status", "active") != "active":
            return refuse(Cause.CUSTOMER_SUSPENDED, detail={"status": customer.get("status")})
        if 0 < account.max_calls <= self._calls.active(aor):
            return refuse(Cause.CALLER_TOO_MANY_CALLS, detail={"max_calls": account.max_calls})

        dialled = request.uri.user or ""
        settings = country_settings(customer)
        destination = resolve(account, dialled, self._accounts, settings)
        if destination is None:
            return refuse(Cause.INVALID_NUMBER, detail={"dialled": dialled})
        verdict.destination = destination
        if destination.call_class not in account.permissions:
            return refuse(
                Cause.CLASS_NOT_PERMITTED,
                detail={
                    "dialled": dialled,
                    "number": destination.number,
                    "call_class": destination.call_class,
                },
            )

        presented = presented_identity(request, account)
        allowed = account.caller_ids or ((account.default_caller_id,) if account.default_caller_id else ())
        if presented is not None:
            match = _find_caller_id(presented, allowed, settings)
            if match is None:
                return refuse(
                    Cause.INVALID_CALLER_ID, detail={"presented": presented, "allowed": list(allowed)}
                )
            verdict.caller_id = match
        else:
            verdict.caller_id = account.default_caller_id or (allowed[0] if allowed else None)
            if verdict.caller_id is None and not destination.internal:
                return refuse(Cause.INVALID_CALLER_ID, detail={"presented": None, "allowed": []})

        if not destination.internal:
            refusal = self._check_funds(account, customer, destination, verdict)
            if refusal is not None:
                return refuse(refusal[0], detail=refusal[1])

        if request.body and _is_sdp(request):
            try:
                offer = SessionDescription.parse(request.body)
            except SipParseError as error:
                return refuse(Cause.MALFORMED_REQUEST, detail={"error": f"SDP: {error}"})
            offered = offered_codecs(offer)
            assigned = [codec.upper() for codec in account.codecs]
            if offered and not set(offered) & set(assigned):
                text = (
                    f"Incompatible media format: offered {', '.join(offered)}; assigned {', '.join(assigned)}"
                )
                return refuse(
                    Cause.CODEC_MISMATCH, detail={"offered": offered, "assigned": assigned}, warning=text
                )
            filtered = filter_codecs(offer, assigned)
            if filtered is not offer and offered:  # else the offer goes on byte for byte
                verdict.body = filtered.to_bytes()

        callee = destination.callee
        if callee is not None:
            if callee.forward_all:
                target = self.forward_contact(callee.forward_all, self.customer(callee))
                return refuse(
                    Cause.CALLEE_FORWARDED,
                    headers=[("Contact", f"<{target}>")],
                    detail={"callee": callee.aor, "target": callee.forward_all},
                )
            if callee.dnd:
                return refuse(Cause.CALLEE_DND, detail={"callee": callee.aor})
            if 0 < callee.max_calls <= self._calls.active(callee.aor):
                return refuse(Cause.CALLEE_BUSY, detail={"callee": callee.aor, "max_calls": callee.max_calls})
            bindings = self._location.lookup(callee.aor)
            if not bindings or not callee.enabled:
                return refuse(Cause.NOT_REGISTERED, detail={"callee": callee.aor})
            verdict.bindings = bindings
        return verdict

    def _check_funds(
        self, account: Account, customer: dict[str, Any] | None, destination: Destination, verdict: Verdict
    ) -> tuple[Cause, dict[str, Any]] | None:
        number = destination.number
        if customer is None:
            return Cause.INSUFFICIENT_FUNDS, {"number": number, "error": "no customer document"}
        plan_name = customer.get("rate_plan")
        if plan_name is None:
            return None  # no plan: nothing is billable
        rates = self._customers.rate_index(plan_name)
        rate = rates.find(number.lstrip("+"), self._clock()) if rates is not None else None
        if rate is None:
            return Cause.NO_RATE, {"number": number, "rate_plan": plan_name}
        needed = rate.first_charge
        try:
            balance = Decimal(customer.get("balance") or "0")
        except InvalidOperation:
            balance = ZERO
        # what calls in progress hold and what ended calls cost since the balance was pushed
        committed = self._calls.reservations.held(account.customer) + self._calls.unsettled(account.customer)
        available = balance - committed
        if available < needed:
            return Cause.INSUFFICIENT_FUNDS, {
                "number": number,
                "needed": str(needed),
                "available": str(available),
                "currency": customer.get("currency"),
            }
        cap_left = self._daily_cap_left(customer, committed)
        if cap_left is not None:
            if cap_left < needed:
                return Cause.DAILY_SPEND_CAP, {
                    "number": number,
                    "needed": str(needed),
                    "cap": customer.get("daily_spend_cap"),
                    "currency": customer.get("currency"),
                }
            available = min(available, cap_left)
        verdict.rate = rate
        verdict.max_duration = rate.max_seconds(available, self._max_call_duration)
        verdict.reserve = max(needed, rate.cost(verdict.max_duration)[1])
        return None

    def _daily_cap_left(self, customer: dict[str, Any], committed: Decimal) -> Decimal | None:
        """What the customer's daily spend cap still allows (None: no cap). The portal pushes what
        was spent today with every balance; this node adds ``committed``, its own spend since
        that push and what calls in progress hold. After the day the push describes has ended,
        its spend no longer counts."""
        if not customer.get("daily_spend_cap"):
            return None
        try:
            cap = Decimal(customer["daily_spend_cap"])
            spent = Decimal(customer.get("spent_today") or "0")
            day_ends = datetime.fromisoformat(customer["spend_day_ends"]).timestamp()
        except (InvalidOperation, KeyError, TypeError, ValueError):
            return ZERO  # a cap the node cannot read allows nothing
        if self._clock() >= day_ends:
            spent = ZERO
        return cap - spent - committed

    def forward_contact(self, target: str, customer: dict[str, Any] | None) -> str:
        """The 302 Contact for a forward-all target: an extension in the realm, or sip:+E164@realm."""
        if target.startswith(("sip:", "sips:", "tel:")):
            return target
        e164 = to_e164(target, country_settings(customer))
        user = e164 if e164 is not None else target
        return f"sip:{user}@{self._realm}"


def _is_sdp(request: Request) -> bool:
    content_type = (request.content_type or "application/sdp").split(";", 1)[0].strip().lower()
    return content_type == "application/sdp"


def _is_number(text: str | None) -> bool:
    if not text:
        return False
    digits = text.strip().removeprefix("+")
    return digits.isascii() and digits.isdigit()


def presented_identity(request: Request, account: Account) -> str | None:
    """The caller ID the request presents (see the module doc), or None."""
    for name in ("P-Asserted-Identity", "P-Preferred-Identity"):
        for value in request.headers.get_all(name):
            try:
                uri = NameAddr.parse(value, name).uri
            except SipParseError:
                continue
            if uri.user:
                return uri.user
    sender = request.from_
    if _is_number(sender.display_name):
        return sender.display_name.strip()  # type: ignore[union-attr]
    user = sender.uri.user
    if _is_number(user) and user not in (account.username, account.extension):
        return user
    return None


def _find_caller_id(presented: str, allowed: tuple[str, ...], settings: CountrySettings) -> str | None:
    """The allowed caller ID equal to ``presented`` (compared in E.164 form where possible)."""
    wanted = to_e164(presented, settings) or presented
    for candidate in allowed:
        if candidate == presented or (to_e164(candidate, settings) or candidate) == wanted:
            return candidate
    return None
