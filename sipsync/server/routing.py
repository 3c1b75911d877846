"""The dial plan: what a dialled Request-URI user means for a customer, and its call class.

``resolve(account, dialled)`` gives a :class:`Destination`:

* an extension of the caller's own customer (``AccountTable.by_extension``) -> the ``internal``
  class, the callee account (the proxy forks to its registered contacts);
* a number in national, international-access or E.164 form that normalises with the customer's
  country settings (``dialplan.to_e164``; default country code 27, national prefix 0) -> the
  upstream trunk, with the E.164 number as the Request-URI user;
* anything else -> ``None`` (the proxy answers 404 "Not Found - Invalid number").

Call classes of a public number, relative to the customer's own country code
(``classify(e164, country_code)``):

=============== =============================================================================
class           rule
=============== =============================================================================
international   the number does not start with +<own country code>
premium         starts with one of the country's premium prefixes
mobile          starts with one of the country's mobile prefixes
national        any other number in the own country
internal        an extension of the same customer (never a number)
=============== =============================================================================

Prefixes per country (digits after the '+', country code included); premium is checked first,
so a premium range inside a mobile block (South Africa's 086x share-call numbers) wins:

======= ================================ =============================================
country mobile                           premium
======= ================================ =============================================
27      276, 277, 278 (06x, 07x, 08x)    2786 (086x share-call), 2790 (090x premium)
======= ================================ =============================================

A country missing from the table has no mobile or premium ranges: every number in it is
national. Add a row to ``CLASS_PREFIXES`` to teach it more.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sipsync.server.dialplan import CountrySettings, to_e164

if TYPE_CHECKING:  # pragma: no cover
    from sipsync.server.accounts import Account, AccountTable

__all__ = [
    "CALL_CLASSES",
    "CLASS_PREFIXES",
    "Destination",
    "INTERNAL",
    "INTERNATIONAL",
    "MOBILE",
    "NATIONAL",
    "PREMIUM",
    "classify",
    "country_settings",
    "resolve",
]

INTERNAL = "internal"
NATIONAL = "national"
MOBILE = "mobile"
INTERNATIONAL = "international"
PREMIUM = "premium"
CALL_CLASSES = (INTERNAL, NATIONAL, MOBILE, INTERNATIONAL, PREMIUM)

# country code -> {"mobile": prefixes, "premium": prefixes}; prefixes are E.164 digits without '+'
CLASS_PREFIXES: dict[str, dict[str, tuple[str, ...]]] = {
    "27": {MOBILE: ("276", "277", "278"), PREMIUM: ("2786", "2790")},
}


@dataclass(init=False, slots=True)
class Destination:
    """Where a dialled string leads; read-only (its __init__ is written out for mypyc, see
    sipsync.native)."""

    dialled: str
    call_class: str
    callee: Account | None  # internal calls
    e164: str | None  # calls to the trunk: '+27115550100'

    def __init__(
        self, dialled: str, call_class: str, callee: Account | None = None, e164: str | None = None
    ) -> None:
        self.dialled = dialled
        self.call_class = call_class
        self.callee = callee
        self.e164 = e164

    @property
    def internal(self) -> bool:
        return self.callee is not None

    @property
    def number(self) -> str:
        """What the call record calls the normalised number: the E.164 form or the extension."""
        return self.e164 if self.e164 is not None else self.dialled


def country_settings(customer: dict[str, Any] | None) -> CountrySettings:
    """The customer document's country settings, or the default (27 / 0)."""
    if not customer:
        return CountrySettings()
    national_prefix = customer.get("national_prefix")
    return CountrySettings(
        country_code=str(customer.get("country_code") or "27"),
        national_prefix="0" if national_prefix is None else str(national_prefix),
    )


def classify(e164: str, country_code: str) -> str:
    digits = e164.lstrip("+")
    if not digits.startswith(country_code):
        return INTERNATIONAL
    table = CLASS_PREFIXES.get(country_code, {})
    if digits.startswith(table.get(PREMIUM, ())):
        return PREMIUM
    if digits.startswith(table.get(MOBILE, ())):
        return MOBILE
    return NATIONAL


def resolve(
    account: Account, dialled: str, accounts: AccountTable, settings: CountrySettings
) -> Destination | None:
    """Where ``dialled`` (the Request-URI user) goes for ``account`` with its customer's country
    ``settings``; None if it is not valid."""
    if not dialled:
        return None
    callee = accounts.by_extension(account.customer, dialled)
    if callee is not None:
        return Destination(dialled=dialled, call_class=INTERNAL, callee=callee)
    e164 = to_e164(dialled, settings)
    if e164 is None:
        return None
    return Destination(dialled=dialled, call_class=classify(e164, settings.country_code), e164=e164)
