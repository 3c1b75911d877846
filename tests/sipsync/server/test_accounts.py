"""Account documents, validation and the version-ordered AccountTable."""

import hashlib

import pytest

from sipsync.server.accounts import Account, AccountTable, ProvisioningError
from sipsync.server.store import LocalStore

REALM = "sip.example.net"


def doc(version: int = 17, username: str = "acme1001", **kw) -> dict:
    d = {
        "kind": "account", "version": version, "username": username, "realm": REALM,
        "customer": "C1001", "extension": "1001",
        "ha1_md5": hashlib.md5(f"{username}:{REALM}:pw".encode()).hexdigest(),  # noqa: S324
        "ha1_sha256": hashlib.sha256(f"{username}:{REALM}:pw".encode()).hexdigest(),
        "enabled": True, "password_change_required": False,
        "codecs": ["PCMU", "G729"], "caller_ids": ["+27115550100"], "default_caller_id": "+27115550100",
        "permissions": ["internal", "national", "mobile"], "max_calls": 2, "max_contacts": 5,
        "forward_all": None, "dnd": False,
    }
    d.update(kw)
    return d


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "sip.sqlite3"


@pytest.fixture
def store(db_path):
    s = LocalStore(db_path)
    yield s
    s.close()


def test_from_document_builds_an_account():
    acc = Account.from_document(doc())
    assert acc.username == "acme1001" and acc.realm == REALM and acc.aor == f"acme1001@{REALM}"
    assert acc.customer == "C1001" and acc.extension == "1001"
    assert acc.codecs == ("PCMU", "G729")
    assert acc.caller_ids == ("+27115550100",) and acc.default_caller_id == "+27115550100"
    assert acc.permissions == frozenset({"internal", "national", "mobile"})
    assert (acc.max_calls, acc.max_contacts, acc.forward_all, acc.dnd, acc.version) == (2, 5, None, False, 17)
    assert acc.enabled is True and acc.password_change_required is False
    assert not hasattr(acc, "__dict__")


def test_optional_fields_have_defaults_and_realm_is_lowercased():
    d = doc(realm="SIP.Example.NET")
    for key in ("kind", "extension", "password_change_required", "codecs", "caller_ids",
                "default_caller_id", "permissions", "forward_all", "dnd"):
        del d[key]
    acc = Account.from_document(d)
    assert acc.realm == REALM
    assert acc.extension is None and acc.codecs == ("PCMU", "G729") and acc.caller_ids == ()
    assert acc.permissions == frozenset() and acc.dnd is False and acc.password_change_required is False


def test_hex_digests_are_normalised_to_lowercase():
    d = doc()
    d["ha1_md5"] = d["ha1_md5"].upper()
    assert Account.from_document(d).ha1_md5 == doc()["ha1_md5"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"version": "17"}, "version"),
        ({"version": -1}, "version"),
        ({"version": True}, "version"),
        ({"username": ""}, "username"),
        ({"username": 5}, "username"),
        ({"username": "a@b"}, "username"),
        ({"realm": None}, "realm"),
        ({"customer": 1001}, "customer"),
        ({"extension": 1001}, "extension"),
        ({"ha1_md5": "abc"}, "ha1_md5"),
        ({"ha1_md5": "z" * 32}, "ha1_md5"),
        ({"ha1_sha256": "0" * 32}, "ha1_sha256"),
        ({"enabled": "yes"}, "enabled"),
        ({"enabled": 1}, "enabled"),
        ({"codecs": "PCMU"}, "codecs"),
        ({"codecs": []}, "codecs"),
        ({"codecs": ["PCMU", 8]}, "codecs"),
        ({"caller_ids": [""]}, "caller_ids"),
        ({"default_caller_id": "+27990000000"}, "default_caller_id"),
        ({"permissions": "internal"}, "permissions"),
        ({"max_calls": 2.5}, "max_calls"),
        ({"max_calls": -1}, "max_calls"),
        ({"max_contacts": None}, "max_contacts"),
        ({"forward_all": 123}, "forward_all"),
        ({"dnd": None}, "dnd"),
        ({"codecs": None}, "codecs"),
        ({"password_change_required": None}, "password_change_required"),
        ({"kind": "credit"}, "kind"),
    ],
)
def test_validation_errors_name_the_field(change, field):
    with pytest.raises(ProvisioningError, match=f"'{field}'"):
        Account.from_document(doc(**change))


@pytest.mark.parametrize("field", ["version", "username", "realm", "customer", "ha1_md5", "ha1_sha256",
                                   "enabled", "max_calls", "max_contacts"])
def test_missing_required_field_is_named(field):
    d = doc()
    del d[field]
    with pytest.raises(ProvisioningError, match=f"'{field}' is required"):
        Account.from_document(d)


def test_provisioning_error_is_a_value_error():
    assert issubclass(ProvisioningError, ValueError)
    with pytest.raises(ValueError, match="object"):
        Account.from_document(["not", "a", "dict"])


def test_version_ordering(store):
    table = AccountTable(store)
    assert table.apply(doc(10, max_calls=1)) is True
    assert table.get("acme1001", REALM).max_calls == 1
    assert table.apply(doc(9, max_calls=9)) is False        # older: ignored
    assert table.apply(doc(10, max_calls=9)) is False       # equal: ignored
    assert table.get("acme1001", REALM).max_calls == 1
    assert table.apply(doc(11, max_calls=3)) is True        # newer: applied
    assert table.get("acme1001", REALM).max_calls == 3
    assert table.versions() == {f"acme1001@{REALM}": 11}
    assert len(table) == 1


def test_invalid_document_changes_nothing(store):
    table = AccountTable(store)
    table.apply(doc(1))
    store.flush()
    with pytest.raises(ProvisioningError):
        table.apply(doc(2, enabled="no"))
    assert table.get("acme1001", REALM).version == 1
    assert store.pending == 0


def test_remove_then_late_older_apply_does_not_resurrect(store, db_path):
    table = AccountTable(store)
    table.apply(doc(5))
    assert table.remove("acme1001", REALM, 6) is True
    assert table.get("acme1001", REALM) is None and len(table) == 0
    assert table.by_extension("C1001", "1001") is None
    assert table.apply(doc(5)) is False                     # late delivery of the old push
    assert table.apply(doc(6)) is False
    assert table.get("acme1001", REALM) is None
    assert table.remove("acme1001", REALM, 6) is False      # duplicate removal
    store.flush()
    store.close()

    # the tombstone survives a restart
    store2 = LocalStore(db_path)
    table = AccountTable(store2)
    assert table.get("acme1001", REALM) is None
    assert table.apply(doc(6)) is False
    assert table.apply(doc(7)) is True                      # re-created later: newer wins
    assert table.get("acme1001", REALM).version == 7
    store2.flush()
    store2.close()
    store3 = LocalStore(db_path)
    assert AccountTable(store3).get("acme1001", REALM).version == 7
    store3.close()


def test_remove_of_older_version_is_ignored(store):
    table = AccountTable(store)
    table.apply(doc(8))
    assert table.remove("acme1001", REALM, 7) is False
    assert table.get("acme1001", REALM) is not None


def test_remove_unknown_account_leaves_a_tombstone(store):
    table = AccountTable(store)
    assert table.remove("ghost", REALM, 3) is True          # removal overtook the creation
    assert table.apply(doc(2, username="ghost")) is False
    assert table.apply(doc(4, username="ghost")) is True


def test_lookups_by_key_and_extension(store):
    table = AccountTable(store)
    table.apply(doc(1))
    table.apply(doc(1, username="acme1002", extension="1002"))
    table.apply(doc(1, username="other", customer="C2", extension="1001"))
    assert table.get("acme1001", "SIP.EXAMPLE.NET").username == "acme1001"
    assert table.get("ACME1001", REALM) is None                # usernames are case-sensitive
    assert table.by_extension("C1001", "1002").username == "acme1002"
    assert table.by_extension("C2", "1001").username == "other"
    assert table.by_extension("C1001", "9999") is None
    # moving an extension drops the old index entry
    table.apply(doc(2, username="acme1002", extension="2002"))
    assert table.by_extension("C1001", "1002") is None
    assert table.by_extension("C1001", "2002").username == "acme1002"
    table.apply(doc(3, username="acme1002", extension=None))
    assert table.by_extension("C1001", "2002") is None
    assert {a.username for a in table} == {"acme1001", "acme1002", "other"}


def test_accounts_persist_and_reload(store, db_path):
    table = AccountTable(store)
    for i in range(50):
        table.apply(doc(i + 1, username=f"u{i}", extension=str(1000 + i)))
    assert store.flush() == 50
    digest, versions = table.digest(), table.versions()
    store.close()
    store2 = LocalStore(db_path)
    again = AccountTable(store2)
    assert len(again) == 50
    assert again.digest() == digest and again.versions() == versions
    assert again.by_extension("C1001", "1042").username == "u42"
    assert again.get("u7", REALM) == table.get("u7", REALM)
    store2.close()


def test_unflushed_apply_is_not_there_after_reopen(store, db_path):
    table = AccountTable(store)
    table.apply(doc(1))
    store.close()
    store2 = LocalStore(db_path)
    assert len(AccountTable(store2)) == 0
    store2.close()


def test_digest_is_stable_and_tracks_versions(tmp_path):
    s1, s2 = LocalStore(tmp_path / "a.db"), LocalStore(tmp_path / "b.db")
    t1, t2 = AccountTable(s1), AccountTable(s2)
    docs = [doc(i + 1, username=f"u{i}") for i in range(10)]
    for d in docs:
        t1.apply(d)
    for d in reversed(docs):
        t2.apply(d)
    assert t1.digest() == t2.digest()
    expected = hashlib.sha256(
        "".join(sorted(f"u{i}@{REALM} {i + 1}\n" for i in range(10))).encode()
    ).hexdigest()
    assert t1.digest() == expected
    t2.apply(doc(99, username="u3"))
    assert t1.digest() != t2.digest()
    t2.remove("u3", REALM, 100)
    t1.remove("u3", REALM, 100)
    assert t1.digest() == t2.digest()
    assert "u3@" + REALM not in t1.versions()
    s1.close()
    s2.close()


def test_permission_sets_are_shared():
    a = Account.from_document(doc(username="a"))
    b = Account.from_document(doc(username="b"))
    assert a.permissions is b.permissions
    assert a.codecs is b.codecs
