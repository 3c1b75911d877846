"""Customer and rate-plan documents the portal pushes, for the proxy to read.

Besides one document per SIP account (:mod:`sipsync.server.accounts`) the portal
pushes two more kinds over the control interface:

``customer`` -- what the proxy needs to know about a tenant::

    {"kind": "customer", "customer": "C1234567", "version": 7, "status": "active",
     "currency": "ZAR", "balance": "100.0000", "country_code": "27",
     "national_prefix": "0", "rate_plan": "Standard"}

    status           "active" | "suspended" | "closed"
    currency         three capital letters (ISO 4217)
    balance          decimal string, at most 4 decimal places, may be negative
    country_code     1-3 digits;  national_prefix  0-2 digits ("" when none)
    rate_plan        a plan name, or null (no plan: nothing is billable)

``rates`` -- one rate plan with all its rates (a plan is pushed whole)::

    {"kind": "rates", "plan": "Standard", "version": 3, "currency": "ZAR",
     "rates": [{"prefix": "27", "description": "South Africa",
                "price_per_minute": "0.35000", "connect_fee": "0.00000",
                "first_increment": 60, "next_increment": 60,
                "effective_from": "2026-01-01T00:00:00Z", "effective_to": null}]}

    prefix           1-15 digits;  description  a string (may be empty)
    price_per_minute, connect_fee   decimal strings >= 0, at most 5 decimal places
    first_increment, next_increment integers >= 1 (seconds)
    effective_from   ISO-8601 date-time with a zone;  effective_to  the same, later, or null
    (prefix, effective_from) is unique within a plan.

Money stays a decimal *string* in the stored document (JSON numbers would go
through binary floating point); a reader converts with ``Decimal(text)``.

Ordering is the accounts' rule: every document has an integer ``version``; a
push whose version is not newer than the one held is ignored.

Persistence: through the store's key/value ``meta`` table (no schema change):
``doc:<kind>:<key>`` holds the document as JSON, ``doc-index:<kind>`` the sorted
list of keys of that kind (rewritten only when a key is first seen).  As
everywhere in this package changes are queued; the caller flushes the store.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from sipsync.server.accounts import ProvisioningError
from sipsync.server.rating import RateIndex

if TYPE_CHECKING:  # pragma: no cover
    from sipsync.server.store import LocalStore

__all__ = [
    "CUSTOMER",
    "CUSTOMER_STATUSES",
    "DocumentTable",
    "KINDS",
    "RATES",
    "validate_customer",
    "validate_rate_plan",
]

CUSTOMER = "customer"
RATES = "rates"
KINDS = (CUSTOMER, RATES)
CUSTOMER_STATUSES = ("active", "suspended", "closed")

_CUSTOMER_KEY = re.compile(r"[A-Z0-9]{4,16}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_COUNTRY_CODE = re.compile(r"[0-9]{1,3}")
_NATIONAL_PREFIX = re.compile(r"[0-9]{0,2}")
_PREFIX = re.compile(r"[0-9]{1,15}")
_DECIMAL = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_MAX_PLAN_NAME = 100


class _Fields:
    """Typed reads from one JSON object, with errors that name the field."""

    def __init__(self, doc: Any, what: str, path: str = "") -> None:
        if not isinstance(doc, dict):
            where = f"field '{path.rstrip('.')}'" if path else "the document"
            raise ProvisioningError(f"{what}: {where} must be an object, not {_json_type(doc)}")
        self.doc = doc
        self.what = what
        self.path = path  # prefix of the field names in messages: 'rates[3].'

    def fail(self, key: str, msg: str) -> ProvisioningError:
        return ProvisioningError(f"{self.what}: field '{self.path}{key}' {msg}")

    def required(self, key: str) -> Any:
        if key not in self.doc:
            raise self.fail(key, "is required")
        return self.doc[key]

    def string(self, key: str, *, pattern: re.Pattern[str] | None = None, hint: str = "",
               nullable: bool = False, empty: bool = False, max_length: int | None = None) -> str | None:
        if nullable and self.doc.get(key) is None:
            return None
        v = self.required(key)
        if not isinstance(v, str):
            raise self.fail(key, f"must be a string, not {_json_type(v)}")
        if pattern is not None and not pattern.fullmatch(v):
            raise self.fail(key, f"must be {hint}, not {v!r}")
        if not empty and not v.strip():
            raise self.fail(key, "must not be empty")
        if max_length is not None and len(v) > max_length:
            raise self.fail(key, f"must be at most {max_length} characters")
        return v

    def integer(self, key: str, *, minimum: int = 0) -> int:
        v = self.required(key)
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.fail(key, f"must be an integer, not {v!r}")
        if v < minimum:
            raise self.fail(key, f"must be >= {minimum}, not {v}")
        return v

    def decimal(self, key: str, *, places: int, negative: bool = False) -> str:
        v = self.required(key)
        if not isinstance(v, str):
            raise self.fail(key, f"must be a decimal string such as \"1.50\", not {_json_type(v)} {v!r}")
        if not _DECIMAL.fullmatch(v):
            raise self.fail(key, f"must be a decimal string such as \"1.50\", not {v!r}")
        try:
            value = Decimal(v)
        except InvalidOperation as exc:  # pragma: no cover - the pattern already excludes these
            raise self.fail(key, f"is not a decimal: {v!r}") from exc
        if not negative and value < 0:
            raise self.fail(key, f"must not be negative, not {v}")
        exponent = value.as_tuple().exponent
        assert isinstance(exponent, int)
        if -exponent > places:
            raise self.fail(key, f"must have at most {places} decimal places, not {v}")
        return v

    def timestamp(self, key: str, *, nullable: bool = False) -> datetime | None:
        text = self.string(key, nullable=nullable)
        if text is None:
            return None
        try:
            when = datetime.fromisoformat(text)
        except ValueError as exc:
            raise self.fail(key, f"must be an ISO-8601 date-time, not {text!r}") from exc
        if when.tzinfo is None:
            raise self.fail(key, f"must carry a time zone (e.g. 'Z'), not {text!r}")
        return when

    def kind(self, expected: str) -> None:
        kind = self.doc.get("kind", expected)
        if kind != expected:
            raise self.fail("kind", f"must be {expected!r}, not {kind!r}")


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int | float):
        return "number"
    return {"str": "string", "list": "array", "dict": "object"}.get(type(v).__name__, type(v).__name__)


def validate_customer(doc: Any) -> tuple[str, int, dict[str, Any]]:
    """Check a customer document; returns (customer, version, document to store).

    Raises ProvisioningError naming the offending field.
    """
    f = _Fields(doc, "customer document")
    customer = f.string("customer", pattern=_CUSTOMER_KEY, hint="4-16 capital letters or digits")
    assert customer is not None
    f.what = f"customer document {customer}"
    f.kind(CUSTOMER)
    version = f.integer("version")
    status = f.string("status")
    if status not in CUSTOMER_STATUSES:
        raise f.fail("status", f"must be one of {', '.join(CUSTOMER_STATUSES)}, not {status!r}")
    stored = dict(doc)
    stored.update(
        kind=CUSTOMER,
        customer=customer,
        version=version,
        status=status,
        currency=f.string("currency", pattern=_CURRENCY, hint="three capital letters (ISO 4217)"),
        balance=f.decimal("balance", places=4, negative=True),
        country_code=f.string("country_code", pattern=_COUNTRY_CODE, hint="1-3 digits"),
        national_prefix=f.string("national_prefix", pattern=_NATIONAL_PREFIX, hint="0-2 digits",
                                 empty=True),
        rate_plan=f.string("rate_plan", nullable=True, max_length=_MAX_PLAN_NAME),
    )
    return customer, version, stored


def validate_rate_plan(doc: Any) -> tuple[str, int, dict[str, Any]]:
    """Check a rate-plan document; returns (plan, version, document to store).

    Raises ProvisioningError naming the offending field (``rates[3].prefix``).
    """
    f = _Fields(doc, "rate plan document")
    plan = f.string("plan", max_length=_MAX_PLAN_NAME)
    assert plan is not None
    f.what = f"rate plan document {plan}"
    f.kind(RATES)
    version = f.integer("version")
    currency = f.string("currency", pattern=_CURRENCY, hint="three capital letters (ISO 4217)")
    rates = f.required("rates")
    if not isinstance(rates, list):
        raise f.fail("rates", f"must be an array, not {_json_type(rates)}")
    seen: dict[tuple[str, datetime], int] = {}
    for i, rate in enumerate(rates):
        r = _Fields(rate, f.what, f"rates[{i}].")
        prefix = r.string("prefix", pattern=_PREFIX, hint="1-15 digits")
        assert prefix is not None
        r.string("description", empty=True, max_length=100)
        r.decimal("price_per_minute", places=5)
        r.decimal("connect_fee", places=5)
        r.integer("first_increment", minimum=1)
        r.integer("next_increment", minimum=1)
        start = r.timestamp("effective_from")
        end = r.timestamp("effective_to", nullable=True)
        assert start is not None
        if end is not None and end <= start:
            raise r.fail("effective_to", "must be later than effective_from")
        if (prefix, start) in seen:
            raise r.fail(
                "effective_from",
                f"repeats rates[{seen[prefix, start]}] (prefix {prefix!r} starting {rate['effective_from']})",
            )
        seen[prefix, start] = i
    stored = dict(doc)
    stored.update(kind=RATES, plan=plan, version=version, currency=currency)
    return plan, version, stored


_VALIDATORS: dict[str, Callable[[Any], tuple[str, int, dict[str, Any]]]] = {
    CUSTOMER: validate_customer,
    RATES: validate_rate_plan,
}


def _meta_key(kind: str, key: str) -> str:
    return f"doc:{kind}:{key}"


def _index_key(kind: str) -> str:
    return f"doc-index:{kind}"


class DocumentTable:
    """{kind: {key: document}} with the version rule, persisted in the store's meta.

    The documents returned by the getters are the table's own: read them, do not
    change them.
    """

    def __init__(self, store: LocalStore) -> None:
        self._store = store
        self._docs: dict[str, dict[str, dict[str, Any]]] = {kind: {} for kind in KINDS}
        self._rate_indexes: dict[str, RateIndex] = {}
        self.load_errors: list[str] = []
        for kind in KINDS:
            index = store.get_meta(_index_key(kind))
            for key in json.loads(index) if index else ():
                text = store.get_meta(_meta_key(kind, key))
                if text is None:
                    self.load_errors.append(f"{kind} {key}: indexed but not stored")
                    continue
                try:
                    _, _, doc = _VALIDATORS[kind](json.loads(text))
                except (ValueError, ProvisioningError) as exc:  # stored under older rules
                    self.load_errors.append(str(exc))
                    continue
                self._docs[kind][key] = doc

    # -- the proxy's reads ----------------------------------------------------------
    def get_customer(self, customer: str) -> dict[str, Any] | None:
        return self._docs[CUSTOMER].get(customer)

    def get_rate_plan(self, name: str) -> dict[str, Any] | None:
        return self._docs[RATES].get(name)

    def rate_index(self, name: str) -> RateIndex | None:
        """The rates of plan ``name`` indexed by prefix (built once per version held)."""
        index = self._rate_indexes.get(name)
        if index is None:
            plan = self._docs[RATES].get(name)
            if plan is None:
                return None
            index = self._rate_indexes[name] = RateIndex(plan)
        return index

    def get(self, kind: str, key: str) -> dict[str, Any] | None:
        return self._docs[kind].get(key)

    def held_version(self, kind: str, key: str) -> int | None:
        doc = self._docs[kind].get(key)
        return None if doc is None else doc["version"]

    def count(self, kind: str) -> int:
        return len(self._docs[kind])

    # -- changes --------------------------------------------------------------------
    def apply(self, kind: str, doc: Any) -> tuple[str, bool]:
        """Validate and install a document of ``kind``; returns (key, applied).

        Not applied (False) unless its version is newer than the one held.
        Raises ProvisioningError (nothing changes) for a malformed document and
        KeyError for an unknown kind.
        """
        key, version, stored = _VALIDATORS[kind](doc)
        docs = self._docs[kind]
        held = docs.get(key)
        if held is not None and version <= held["version"]:
            return key, False
        text = json.dumps(stored, separators=(",", ":"), sort_keys=True)  # fails before any change
        if held is None:
            self._store.set_meta(_index_key(kind), json.dumps(sorted([*docs, key])))
        docs[key] = stored
        if kind == RATES:
            self._rate_indexes.pop(key, None)
        self._store.set_meta(_meta_key(kind, key), text)
        return key, True

    # -- reconcile ------------------------------------------------------------------
    def versions(self, kind: str) -> dict[str, int]:
        return {key: doc["version"] for key, doc in self._docs[kind].items()}

    def digest(self, kind: str) -> str:
        """SHA-256 hex over the sorted lines 'key version' (the AccountTable.digest recipe)."""
        h = hashlib.sha256()
        for line in sorted(f"{key} {doc['version']}\n" for key, doc in self._docs[kind].items()):
            h.update(line.encode())
        return h.hexdigest()
