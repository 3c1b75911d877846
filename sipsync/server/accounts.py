"""The in-memory account table the registrar and proxy consult.

The portal pushes one provisioning document per SIP account (see
:meth:`Account.from_document` for its shape).  :class:`AccountTable` holds them
as :class:`Account` objects in dicts (O(1) lookups by ``(username, realm)`` and
by ``(customer, extension)``) and persists every accepted change through the
:class:`~sipsync.server.store.LocalStore` queue, so after a restart the service
enforces the last known state even while the portal is down.  As everywhere in
this package, changes are *queued*: the caller flushes the store.

Ordering: every document carries an integer ``version``, increasing per
account.  A push whose version is not newer than what is held (a late or
duplicate delivery) is ignored.  Removal leaves a tombstone with the removal's
version, persisted like a document (``{"kind": "tombstone", ...}``), so a late
older push cannot resurrect a removed account, not even after a restart.

Realms (SIP domains) are case-insensitive and are lower-cased; usernames are
case-sensitive (RFC 3261 19.1.4) and kept as given.
"""

from __future__ import annotations

import hashlib
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from sipsync.server.store import LocalStore

__all__ = ["Account", "AccountTable", "ProvisioningError", "TOMBSTONE_KIND"]

TOMBSTONE_KIND = "tombstone"
_HEX32 = re.compile(r"[0-9a-f]{32}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_intern = sys.intern
_shared_sets: dict[frozenset[str], frozenset[str]] = {}
_shared_tuples: dict[tuple[str, ...], tuple[str, ...]] = {}


class ProvisioningError(ValueError):
    """A provisioning document is malformed; the message names the field."""


def _share_set(items: frozenset[str]) -> frozenset[str]:
    # Most accounts have one of a handful of permission sets: keep one copy each.
    return _shared_sets.setdefault(items, items)


def _share_tuple(items: tuple[str, ...]) -> tuple[str, ...]:
    return _shared_tuples.setdefault(items, items)


class _Doc:
    """Typed reads from a provisioning document, with errors naming the field."""

    __slots__ = ("doc", "who")

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.who = ""

    def _fail(self, key: str, msg: str) -> ProvisioningError:
        return ProvisioningError(f"account document{self.who}: field {key!r} {msg}")

    def get(self, key: str, required: bool) -> Any:
        if key not in self.doc:
            if required:
                raise self._fail(key, "is required")
            return None
        return self.doc[key]

    def string(self, key: str, *, required: bool = True, nullable: bool = False,
               empty: bool = False) -> str | None:
        v = self.get(key, required and not nullable)
        if v is None:
            if nullable or not required:
                return None
            raise self._fail(key, "must not be null")
        if not isinstance(v, str):
            raise self._fail(key, f"must be a string, not {type(v).__name__}")
        if not empty and not v.strip():
            raise self._fail(key, "must not be empty")
        return v

    def boolean(self, key: str, *, default: bool | None = None) -> bool:
        if default is not None and key not in self.doc:
            return default
        v = self.get(key, True)
        if not isinstance(v, bool):
            raise self._fail(key, f"must be true or false, not {v!r}")
        return v

    def integer(self, key: str, *, minimum: int = 0, default: int | None = None) -> int:
        if default is not None and key not in self.doc:
            return default
        v = self.get(key, True)
        if isinstance(v, bool) or not isinstance(v, int):
            raise self._fail(key, f"must be an integer, not {v!r}")
        if v < minimum:
            raise self._fail(key, f"must be >= {minimum}, not {v}")
        return v

    def strings(self, key: str, *, default: tuple[str, ...] | None = None) -> tuple[str, ...]:
        if default is not None and key not in self.doc:
            return default
        v = self.get(key, True)
        if not isinstance(v, list | tuple):
            raise self._fail(key, f"must be a list of strings, not {type(v).__name__}")
        for i, item in enumerate(v):
            if not isinstance(item, str) or not item:
                raise self._fail(key, f"item {i} must be a non-empty string, not {item!r}")
        return tuple(v)

    def hexdigest(self, key: str, pattern: re.Pattern[str], length: int) -> str:
        v = self.string(key)
        assert v is not None
        v = v.lower()
        if not pattern.fullmatch(v):
            raise self._fail(key, f"must be {length} hex digits")
        return v


@dataclass(slots=True, kw_only=True)
class Account:
    """One SIP account as provisioned by the portal (keyword-only construction)."""

    username: str
    realm: str
    customer: str
    extension: str | None
    ha1_md5: str
    ha1_sha256: str
    enabled: bool
    password_change_required: bool
    codecs: tuple[str, ...] = ("PCMU", "G729")
    caller_ids: tuple[str, ...]
    default_caller_id: str | None
    permissions: frozenset[str]
    max_calls: int
    max_contacts: int
    forward_all: str | None
    dnd: bool
    version: int
    mailbox: tuple[int, int] = (0, 0)  # voicemail messages (new, old) for message-summary

    @property
    def aor(self) -> str:
        """'username@realm', the address-of-record the location service keys on."""
        return f"{self.username}@{self.realm}"

    @classmethod
    def from_document(cls, doc: Any) -> Account:
        """Build an Account from a provisioning document, validating it.

        Required: version, username, realm, customer, ha1_md5, ha1_sha256,
        enabled, max_calls, max_contacts.  Optional (default): kind
        ("account"), extension (null), password_change_required (false),
        codecs (["PCMU", "G729"]), caller_ids ([]), default_caller_id (null,
        must be one of caller_ids when given), permissions ([]), forward_all
        (null), dnd (false), mailbox ({"new": 0, "old": 0}: voicemail counts).
        ``max_contacts`` 0 means no limit.
        Raises ProvisioningError naming the offending field.
        """
        if not isinstance(doc, dict):
            raise ProvisioningError(f"account document must be an object, not {type(doc).__name__}")
        d = _Doc(doc)
        kind = doc.get("kind", "account")
        if kind != "account":
            raise d._fail("kind", f"must be 'account', not {kind!r}")
        username = d.string("username")
        realm = d.string("realm")
        assert username is not None and realm is not None
        d.who = f" {username}@{realm}"
        if any(ch in username for ch in "@: \t\r\n<>"):
            raise d._fail("username", "must not contain '@', ':', '<', '>' or whitespace")
        version = d.integer("version", minimum=0)
        customer = d.string("customer")
        extension = d.string("extension", nullable=True)
        caller_ids = d.strings("caller_ids", default=())
        default_cid = d.string("default_caller_id", nullable=True)
        if default_cid is not None and caller_ids and default_cid not in caller_ids:
            raise d._fail("default_caller_id", f"{default_cid!r} is not one of caller_ids")
        codecs = d.strings("codecs", default=("PCMU", "G729"))
        if not codecs:
            raise d._fail("codecs", "must name at least one codec")
        assert customer is not None
        return cls(
            username=username,
            realm=_intern(realm.lower()),
            customer=_intern(customer),
            extension=extension,
            ha1_md5=d.hexdigest("ha1_md5", _HEX32, 32),
            ha1_sha256=d.hexdigest("ha1_sha256", _HEX64, 64),
            enabled=d.boolean("enabled"),
            password_change_required=d.boolean("password_change_required", default=False),
            codecs=_share_tuple(tuple(_intern(c) for c in codecs)),
            caller_ids=caller_ids,
            default_caller_id=default_cid,
            permissions=_share_set(frozenset(_intern(p) for p in d.strings("permissions", default=()))),
            max_calls=d.integer("max_calls", minimum=0),
            max_contacts=d.integer("max_contacts", minimum=0),
            forward_all=d.string("forward_all", nullable=True),
            dnd=d.boolean("dnd", default=False),
            version=version,
            mailbox=_mailbox(d),
        )


def _mailbox(d: _Doc) -> tuple[int, int]:
    value = d.get("mailbox", False)
    if value is None:
        return (0, 0)
    if not isinstance(value, dict):
        raise d._fail("mailbox", f'must be {{"new": N, "old": M}}, not {value!r}')
    counts = _Doc(value)
    counts.who = d.who
    try:
        return (counts.integer("new", default=0), counts.integer("old", default=0))
    except ProvisioningError as exc:
        raise ProvisioningError(str(exc).replace("field '", "field 'mailbox.", 1)) from None


def _key(username: str, realm: str) -> tuple[str, str]:
    return (username, realm.lower())


class AccountTable:
    """Accounts by (username, realm) and by (customer, extension); see module doc."""

    def __init__(self, store: LocalStore) -> None:
        self._store = store
        self._accounts: dict[tuple[str, str], Account] = {}
        self._by_ext: dict[tuple[str, str], Account] = {}
        self._tombstones: dict[tuple[str, str], int] = {}
        self.load_errors: list[str] = []
        # called with (old, new) after every accepted change: (None, acc) added, (acc, None) removed
        self.listeners: list[Callable[[Account | None, Account | None], None]] = []
        for doc in store.load_accounts():
            if doc.get("kind") == TOMBSTONE_KIND:
                self._tombstones[_key(doc["username"], doc["realm"])] = int(doc["version"])
                continue
            try:
                acc = Account.from_document(doc)
            except ProvisioningError as exc:   # stored by an older version of the rules
                self.load_errors.append(str(exc))
                continue
            self._install(acc)

    # -- lookups -------------------------------------------------------------------
    def get(self, username: str, realm: str) -> Account | None:
        return self._accounts.get((username, realm.lower()))

    def by_extension(self, customer: str, extension: str) -> Account | None:
        return self._by_ext.get((customer, extension))

    def held_version(self, username: str, realm: str) -> int | None:
        """Version held for the account, live or removed (tombstone); None if unknown."""
        k = _key(username, realm)
        acc = self._accounts.get(k)
        if acc is not None:
            return acc.version
        return self._tombstones.get(k)

    def __len__(self) -> int:
        return len(self._accounts)

    def __iter__(self) -> Iterator[Account]:
        """The live accounts (a snapshot: safe to apply() while iterating)."""
        return iter(list(self._accounts.values()))

    # -- changes ---------------------------------------------------------------------
    def apply(self, doc: dict[str, Any]) -> bool:
        """Install a pushed document; False (ignored) unless its version is newer.

        Raises ProvisioningError for a malformed document (nothing changes).
        """
        acc = Account.from_document(doc)
        held = self.held_version(acc.username, acc.realm)
        if held is not None and acc.version <= held:
            return False
        k = (acc.username, acc.realm)
        self._tombstones.pop(k, None)
        old = self._accounts.get(k)
        if old is not None:
            self._uninstall(old)
        self._install(acc)
        stored = dict(doc)
        stored["realm"] = acc.realm
        self._store.put_account(stored)
        self._changed(old, acc)
        return True

    def remove(self, username: str, realm: str, version: int) -> bool:
        """Remove an account as of ``version``; False (ignored) unless newer than held.

        Leaves a tombstone so that a late push of an older document is ignored.
        """
        if isinstance(version, bool) or not isinstance(version, int):
            raise ProvisioningError(f"removal of {username}@{realm}: field 'version' must be an integer")
        k = _key(username, realm)
        held = self.held_version(*k)
        if held is not None and version <= held:
            return False
        old = self._accounts.pop(k, None)
        if old is not None:
            self._uninstall(old, already_popped=True)
        self._tombstones[k] = version
        self._store.put_account(
            {"kind": TOMBSTONE_KIND, "username": k[0], "realm": k[1], "version": version}
        )
        if old is not None:
            self._changed(old, None)
        return True

    # -- reconcile ---------------------------------------------------------------------
    def versions(self) -> dict[str, int]:
        """'username@realm' -> version of every live account."""
        return {f"{u}@{r}": a.version for (u, r), a in self._accounts.items()}

    def digest(self) -> str:
        """SHA-256 hex over the sorted lines 'username@realm version' of live accounts.

        Stable across processes and insertion order, so the portal can compute
        the same over what it believes it pushed and compare.
        """
        h = hashlib.sha256()
        for line in sorted(f"{u}@{r} {a.version}\n" for (u, r), a in self._accounts.items()):
            h.update(line.encode())
        return h.hexdigest()

    # -- listeners --------------------------------------------------------------------------
    def _changed(self, old: Account | None, new: Account | None) -> None:
        for listener in self.listeners:
            listener(old, new)

    # -- internals -----------------------------------------------------------------------
    def _install(self, acc: Account) -> None:
        self._accounts[(acc.username, acc.realm)] = acc
        if acc.extension is not None:
            self._by_ext[(acc.customer, acc.extension)] = acc

    def _uninstall(self, acc: Account, already_popped: bool = False) -> None:
        if not already_popped:
            self._accounts.pop((acc.username, acc.realm), None)
        if acc.extension is not None and self._by_ext.get((acc.customer, acc.extension)) is acc:
            del self._by_ext[(acc.customer, acc.extension)]
