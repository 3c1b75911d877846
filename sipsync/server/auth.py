"""Digest authentication of requests against the account table (RFC 3261 section 22).

A request without credentials, with credentials for another realm, or with a nonce this node did
not issue gets a fresh challenge; none of those count as a failure (phones authenticating
correctly must never be banned). A wrong username or password is a 403 and counts against the
source address; past the limit the source is refused without checking for a while.
"""

import logging
import time
from collections.abc import Callable
from typing import Final

from sipsync.server.accounts import Account, AccountTable
from sipsync.server.causes import Cause, Reply, reject
from sipsync.sip.digest import (
    DigestError,
    NonceManager,
    NonceState,
    build_challenges,
    parse_credentials,
    verify_response,
)
from sipsync.sip.message import Request

log = logging.getLogger("sipsync.auth")

Address = tuple[str, int]
_NONCE_MARK: Final = "\x00nonce\x00"


class FailureLimiter:
    """Counts credential failures per source IP in a fixed window."""

    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = limit
        self._window = window
        self._clock = clock
        self._failures: dict[str, tuple[float, int]] = {}

    def blocked(self, ip: str) -> bool:
        entry = self._failures.get(ip)
        if entry is None:
            return False
        started, count = entry
        if self._clock() - started > self._window:
            del self._failures[ip]
            return False
        return count >= self._limit

    def failed(self, ip: str) -> None:
        now = self._clock()
        started, count = self._failures.get(ip, (now, 0))
        if now - started > self._window:
            started, count = now, 0
        self._failures[ip] = (started, count + 1)
        if len(self._failures) > 100_000:
            self._sweep(now)

    def succeeded(self, ip: str) -> None:
        self._failures.pop(ip, None)

    def _sweep(self, now: float) -> None:
        for ip in [ip for ip, (started, _) in self._failures.items() if now - started > self._window]:
            del self._failures[ip]


class Authenticator:
    def __init__(
        self,
        *,
        realm: str,
        accounts: AccountTable,
        nonces: NonceManager,
        limiter: FailureLimiter,
        algorithms: tuple[str, ...] = ("MD5", "SHA-256"),
    ) -> None:
        self.realm = realm
        self._accounts = accounts
        self._nonces = nonces
        self._limiter = limiter
        self._algorithms = algorithms
        # The challenge values with the nonce left out: (text before it, text after it) per
        # algorithm, for stale=False and stale=True. A nonce is base64url, so never needs quoting.
        self._templates = {
            stale: [
                tuple(value.split(_NONCE_MARK))
                for value in build_challenges(realm, _NONCE_MARK, algorithms=algorithms, stale=stale)
            ]
            for stale in (False, True)
        }

    def challenge(self, *, proxy: bool, stale: bool = False) -> Reply:
        header = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        nonce = self._nonces.issue(self.realm)
        templates = self._templates[stale]
        return Reply(
            407 if proxy else 401, headers=[(header, before + nonce + after) for before, after in templates]
        )

    def authenticate(self, request: Request, source: Address, *, proxy: bool = False) -> Account | Reply:
        """The authenticated, usable account, or the reply that refuses or challenges the request."""
        values = request.headers.get_all("Proxy-Authorization" if proxy else "Authorization")
        if not values:
            return self.challenge(proxy=proxy)
        if self._limiter.blocked(source[0]):
            return self._failure(Cause.RATE_LIMITED, request, source, None, count=False)
        credentials = None
        for value in values:
            try:
                parsed = parse_credentials(value)
            except DigestError as error:
                return self._failure(Cause.MALFORMED_CREDENTIALS, request, source, None, detail=str(error))
            if parsed.realm == self.realm:
                credentials = parsed
                break
        if credentials is None:
            return self.challenge(proxy=proxy)
        state = self._nonces.check(credentials.nonce, self.realm)
        if state is NonceState.INVALID:
            return self.challenge(proxy=proxy)
        account = self._accounts.get(credentials.username, self.realm)
        if account is None:
            return self._failure(Cause.UNKNOWN_USER, request, source, credentials.username)
        ha1 = account.ha1_sha256 if credentials.algorithm.upper().startswith("SHA-256") else account.ha1_md5
        if not verify_response(credentials, request.method, ha1):
            return self._failure(Cause.BAD_PASSWORD, request, source, credentials.username, account=account)
        self._limiter.succeeded(source[0])
        if state is NonceState.STALE:
            return self.challenge(proxy=proxy, stale=True)
        if not account.enabled:
            return reject(Cause.ACCOUNT_DISABLED, account=account.aor)
        if account.password_change_required:
            return reject(Cause.PASSWORD_CHANGE_REQUIRED, account=account.aor)
        return account

    def _failure(
        self,
        cause: Cause,
        request: Request,
        source: Address,
        username: str | None,
        *,
        account: Account | None = None,
        detail: str | None = None,
        count: bool = True,
    ) -> Reply:
        if count:
            self._limiter.failed(source[0])
        log.warning(
            "auth-failed cause=%s user=%s src=%s:%s method=%s ua=%r",
            cause,
            username or "-",
            source[0],
            source[1],
            request.method,
            request.headers.get("User-Agent") or "-",
        )
        return reject(
            cause,
            account=account.aor if account else (f"{username}@{self.realm}" if username else None),
            detail={"username": username, **({"error": detail} if detail else {})},
        )
