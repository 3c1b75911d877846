"""One SIP service node: the store, the tables, the registrar, the transports, housekeeping."""

import asyncio
import contextlib
import gc
import logging
import secrets
import time
from typing import TYPE_CHECKING

from sipsync import native
from sipsync.server.accounts import AccountTable
from sipsync.server.auth import Authenticator, FailureLimiter
from sipsync.server.calls import CallTable
from sipsync.server.config import ServiceConfig
from sipsync.server.core import SipService
from sipsync.server.documents import DocumentTable
from sipsync.server.events import EventRecorder
from sipsync.server.location import LocationService
from sipsync.server.notifier import Notifier
from sipsync.server.proxy import Proxy
from sipsync.server.registrar import Registrar
from sipsync.server.store import Checkpointer, LocalStore
from sipsync.server.transport import Transports
from sipsync.sip.digest import NonceManager

if TYPE_CHECKING:  # aiohttp is imported only when the control interface is wanted
    from sipsync.server.control import ControlServer

log = logging.getLogger("sipsync.node")

HOUSEKEEPING_INTERVAL = 0.5
ALIVE_KEY = "alive_at"  # meta: the last time (epoch) the node noted it was alive with calls up


def tune_gc() -> None:
    """For a node process, once it has started: what start-up loaded (accounts, bindings) lives as
    long as the process, so it is moved out of the cyclic collector's reach and full collections
    no longer walk 100,000 accounts; and the young generation is collected every 10,000
    allocations instead of 700 (requests allocate many short-lived containers, which reference
    counting frees; this costs a little memory, it leaks nothing)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 50, 100)


class SipNode:
    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.store = LocalStore(config.store_path, wal_autocheckpoint=0)
        self.checkpointer = Checkpointer(config.store_path)
        self.accounts = AccountTable(self.store)
        self.documents = DocumentTable(self.store)  # customers and rate plans, for the proxy
        self.location = LocationService(self.store, clock=time.time)
        self.events = EventRecorder(self.store, node=config.node_id)
        self.authenticator = Authenticator(
            realm=config.realm,
            accounts=self.accounts,
            nonces=NonceManager(self._nonce_secret(), ttl=config.nonce_ttl),
            limiter=FailureLimiter(config.auth_failure_limit, config.auth_failure_window),
            algorithms=config.digest_algorithms,
        )
        self.registrar = Registrar(config=config, authenticator=self.authenticator, location=self.location)
        self.calls = CallTable(
            self.events, node_id=config.node_id, customer_version=self._customer_version, store=self.store
        )
        # calls answered before a restart (or a crash): recorded now, cause node_restart
        last_alive = self.store.get_meta(ALIVE_KEY)
        self.closed_out = self.calls.close_out_after_restart(
            last_alive=float(last_alive) if last_alive is not None else None
        )
        if self.closed_out:
            log.warning("closed out %d call(s) left in progress before a restart", len(self.closed_out))
        self._alive_noted = 0.0
        self.service = SipService(
            config=config, store=self.store, registrar=self.registrar, events=self.events
        )
        self.transports = Transports(self.service.handle)
        self.proxy = Proxy(
            config=config,
            authenticator=self.authenticator,
            accounts=self.accounts,
            location=self.location,
            events=self.events,
            calls=self.calls,
            transports=self.transports,
            customers=self.documents,
        )
        self.service.attach_proxy(self.proxy)
        self.notifier = Notifier(
            config=config,
            authenticator=self.authenticator,
            accounts=self.accounts,
            calls=self.calls,
            store=self.store,
            proxy=self.proxy,
        )
        self.notifier.restore()  # before any request: refreshes after a restart find their dialog
        self.store.flush()  # bindings that expired while the node was down are gone for good
        self._housekeeping: asyncio.Task | None = None
        self.control: ControlServer | None = None  # once start_control() ran

    def _customer_version(self, customer: str) -> int | None:
        document = self.documents.get_customer(customer)
        return None if document is None else document["version"]

    def _nonce_secret(self) -> bytes:
        # Kept in the store so nonces issued before a restart stay valid after it.
        secret = self.store.get_meta("nonce_secret")
        if secret is None:
            secret = secrets.token_hex(32)
            self.store.set_meta("nonce_secret", secret)
        return bytes.fromhex(secret)

    async def start(self) -> list[str]:
        bound = []
        for index, (host, port) in enumerate(self.config.listen):
            udp, tcp = await self.transports.listen(host, port)
            bound += [f"udp:{udp[0]}:{udp[1]}", f"tcp:{tcp[0]}:{tcp[1]}"]
            if index == 0:
                self.proxy.set_local(udp[0], udp[1])  # Record-Route and Via name the bound port
        self.proxy.reschedule()  # the expiry timers of the subscriptions restored at start-up
        self._housekeeping = asyncio.create_task(self._housekeep())
        self.checkpointer.start()
        log.info(
            "node %s serving realm %s: %d accounts, %d bindings; code %s",
            self.config.node_id,
            self.config.realm,
            len(self.accounts),
            self.location.count(),
            native.state,
        )
        return bound

    async def start_control(self, host: str, port: int, secret: str) -> tuple[str, int]:
        """Serve the authenticated HTTP control interface on this loop; returns the bound address."""
        from sipsync.server.control import ControlServer  # aiohttp only when the interface is wanted

        control = ControlServer(self, secret)
        bound = await control.start(host, port)
        self.control = control
        return bound

    async def _housekeep(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_INTERVAL)
            try:
                self.location.expire()
                self._note_alive()
                self.notifier.save()
                if self.store.pending:
                    self.service.flush()
            except Exception:
                log.exception("housekeeping failed")

    def _note_alive(self) -> None:
        """While calls are in progress, note the time in the store now and then: after a crash
        they are closed out at the last note (``CallTable.close_out_after_restart``)."""
        now = time.time()
        if len(self.calls) and now - self._alive_noted >= self.config.keepalive_interval:
            self._alive_noted = now
            self.store.set_meta(ALIVE_KEY, repr(now))

    async def stop(self) -> None:
        if self.control is not None:  # first: no push may arrive once the store is closing
            await self.control.stop()
            self.control = None
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeping
        self.proxy.close()
        await self.transports.close()
        self.notifier.save()
        self.service.flush()
        self.checkpointer.stop()
        self.store.checkpoint()
        self.store.close()
