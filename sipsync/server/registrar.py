"""REGISTER handling (RFC 3261 section 10.3), on top of authentication and the location service.

Stateless like Kamailio's registrar with `sl`: no transaction is kept. A retransmitted REGISTER
(same Call-ID and CSeq as a binding already holds) changes nothing and is answered with the
current bindings again, so a lost 200 OK is simply repeated.
"""

import time
from collections.abc import Callable
from typing import Final

from sipsync.server.accounts import Account
from sipsync.server.auth import Address, Authenticator
from sipsync.server.causes import Cause, Reply, reject
from sipsync.server.config import ServiceConfig
from sipsync.server.location import Binding, ContactChange, LocationError, LocationService
from sipsync.sip.errors import SipParseError
from sipsync.sip.message import Request
from sipsync.sip.uri import NameAddr

_LOCATION_CAUSES: Final = {403: Cause.TOO_MANY_CONTACTS, 500: Cause.OUT_OF_ORDER}


class Registrar:
    def __init__(
        self,
        *,
        config: ServiceConfig,
        authenticator: Authenticator,
        location: LocationService,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._auth = authenticator
        self._location = location
        self._clock = clock

    def register(self, request: Request, source: Address, transport: str) -> Reply:
        outcome = self._auth.authenticate(request, source)
        if isinstance(outcome, Reply):
            return outcome
        account: Account = outcome
        if request.to.uri.user != account.username:
            return reject(Cause.IDENTITY_MISMATCH, account=account.aor, detail={"to": str(request.to.uri)})
        aor = account.aor
        call_id, cseq = request.call_id, request.cseq.seq
        now = self._clock()

        contacts = self._contacts(request)
        if not contacts:
            if contacts is None:  # "Contact: *"
                return self._unregister_all(request, aor, call_id, cseq, now)
            # a query (RFC 3261 10.2.3): list the bindings, change nothing
            return self._ok(self._location.lookup(aor, now), now, durable=False)

        if self._location.written_by(aor, call_id, cseq, now):  # a retransmission
            return self._ok(self._location.lookup(aor, now), now, durable=False)

        try:
            changes = [self._change(contact, request, source, transport) for contact in contacts]
        except _TooBrief:
            return reject(
                Cause.INTERVAL_TOO_BRIEF,
                account=aor,
                headers=[("Min-Expires", str(self._config.min_expires))],
            )
        except (ValueError, SipParseError) as error:
            return reject(Cause.BAD_CONTACT, account=aor, detail={"error": str(error)})
        try:
            bindings = self._location.apply_register(
                aor, changes, call_id=call_id, cseq=cseq, max_contacts=account.max_contacts, now=now
            )
        except LocationError as error:
            return reject(_LOCATION_CAUSES.get(error.code, Cause.OUT_OF_ORDER), account=aor)
        return self._ok(bindings, now, durable=True)

    def _unregister_all(self, request: Request, aor: str, call_id: str, cseq: int, now: float) -> Reply:
        if request.expires != 0:
            return reject(Cause.BAD_CONTACT, account=aor, detail={"error": "Contact: * needs Expires: 0"})
        try:
            self._location.remove_all(aor, call_id=call_id, cseq=cseq, now=now)
        except LocationError:
            return reject(Cause.OUT_OF_ORDER, account=aor)
        return self._ok([], now, durable=True)

    def _contacts(self, request: Request) -> list[tuple[str, dict[str, str | None]]] | None:
        """(URI text, parameters) of each Contact, as ``request.contacts`` gives them; None for
        ``Contact: *``. Raises SipParseError like the accessor.

        (Keeping these by the Contact text, which a phone repeats on every refresh, saved 2.7 %
        of the instructions per registration but cost 26 MiB with 100,000 bindings: not kept.)"""
        values = request.headers.get_all("Contact")
        if "*" in values:
            if values == ["*"]:
                return None
            raise SipParseError("malformed Contact: '*' mixed with addresses", "Contact")
        out = []
        for value in values:
            contact = NameAddr.parse(value, "Contact")
            out.append((str(contact.uri), contact.params))
        return out

    def _change(
        self, contact: tuple[str, dict[str, str | None]], request: Request, source: Address, transport: str
    ) -> ContactChange:
        uri, params = contact
        expires = self._expires(params, request)
        q = params.get("q")
        reg_id = params.get("reg-id")
        instance = params.get("+sip.instance")
        return ContactChange(
            contact_uri=uri,
            expires=expires,
            q=float(q) if q else None,
            source=source,
            transport=transport,
            user_agent=request.headers.get("User-Agent"),
            instance_id=instance.strip('"') if instance else None,
            reg_id=int(reg_id) if reg_id else None,
            path=tuple(request.headers.get_all("Path")),
        )

    def _expires(self, params: dict[str, str | None], request: Request) -> int:
        raw = params.get("expires")
        if raw is not None:
            if not raw.isdigit():
                raise ValueError(f"expires={raw!r} is not a number of seconds")
            expires = int(raw)
        else:
            header = request.expires
            expires = self._config.default_expires if header is None else header
        if expires == 0:
            return 0
        if expires < self._config.min_expires:
            raise _TooBrief
        return min(expires, self._config.max_expires)

    def _ok(self, bindings: list[Binding], now: float, *, durable: bool) -> Reply:
        headers = [("Contact", f"<{b.contact_uri}>;expires={b.expires_in(now)}") for b in bindings]
        return Reply(200, headers=headers, durable=durable)


class _TooBrief(Exception):
    pass
