"""The dial plan: extensions, number normalisation with the customer's country, call classes."""

import pytest

from sipsync.server.accounts import Account, AccountTable
from sipsync.server.dialplan import CountrySettings
from sipsync.server.provision import document_for_password
from sipsync.server.routing import classify, country_settings, resolve
from sipsync.server.store import LocalStore

REALM = "sip.test"


@pytest.mark.parametrize(
    ("e164", "call_class"),
    [
        ("+27115550100", "national"),
        ("+27215550100", "national"),
        ("+27825550100", "mobile"),
        ("+27715550100", "mobile"),
        ("+27615550100", "mobile"),
        ("+27865550100", "premium"),  # 086x share-call sits inside the 08x mobile block
        ("+27905550100", "premium"),
        ("+441632960001", "international"),
        ("+2671234567", "international"),  # Botswana: starts with 2, not with 27
    ],
)
def test_classes_for_south_africa(e164, call_class):
    assert classify(e164, "27") == call_class


def test_a_country_without_a_table_row_is_all_national():
    assert classify("+4412345678", "44") == "national"
    assert classify("+27821234567", "44") == "international"


@pytest.fixture
def accounts(tmp_path):
    with LocalStore(str(tmp_path / "s.sqlite3")) as store:
        table = AccountTable(store)
        table.apply(document_for_password("alice", REALM, "pw", extension="1001"))
        table.apply(document_for_password("bob", REALM, "pw", extension="1002"))
        table.apply(document_for_password("eve", REALM, "pw", extension="1003", customer="C0000002"))
        yield table


def test_an_extension_of_the_same_customer_is_internal(accounts):
    alice = accounts.get("alice", REALM)
    destination = resolve(alice, "1002", accounts, CountrySettings())
    assert destination.internal and destination.callee.username == "bob"
    assert destination.call_class == "internal" and destination.number == "1002"


def test_another_customers_extension_is_not_reachable(accounts):
    alice: Account = accounts.get("alice", REALM)
    assert resolve(alice, "1003", accounts, CountrySettings()) is None


@pytest.mark.parametrize(
    ("dialled", "e164", "call_class"),
    [
        ("0115550100", "+27115550100", "national"),
        ("+27825550100", "+27825550100", "mobile"),
        ("0027825550100", "+27825550100", "mobile"),
        ("00441632960001", "+441632960001", "international"),
    ],
)
def test_numbers_normalise_with_the_default_country(accounts, dialled, e164, call_class):
    destination = resolve(accounts.get("alice", REALM), dialled, accounts, CountrySettings())
    assert (destination.e164, destination.call_class, destination.internal) == (e164, call_class, False)


def test_the_customers_country_settings_are_used(accounts):
    customer = {"country_code": "44", "national_prefix": "0"}
    destination = resolve(accounts.get("alice", REALM), "01632960001", accounts, country_settings(customer))
    assert (destination.e164, destination.call_class) == ("+441632960001", "national")
    assert country_settings(None).country_code == "27"


@pytest.mark.parametrize("dialled", ["", "12", "bob", "0123", "+0123456789"])
def test_what_does_not_normalise_is_invalid(accounts, dialled):
    assert resolve(accounts.get("alice", REALM), dialled, accounts, CountrySettings()) is None
