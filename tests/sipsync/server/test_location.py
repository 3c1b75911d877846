"""LocationService: RFC 3261 10.3 save rules, lookup order, expiry, persistence."""

import pytest

from sipsync.server.location import Binding, ContactChange, LocationError, LocationService
from sipsync.server.store import LocalStore

AOR = "acme1001@sip.example.net"
T0 = 1_800_000_000.0
SRC = ("198.51.100.7", 40123)
INSTANCE = "<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>"


class Clock:
    def __init__(self, t: float = T0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def cc(uri: str, expires: int = 3600, **kw) -> ContactChange:
    kw.setdefault("source", SRC)
    return ContactChange(uri, expires, **kw)


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "sip.sqlite3"


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def env(db_path, clock):
    store = LocalStore(db_path)
    loc = LocationService(store, clock=clock)
    yield store, loc
    store.close()


def reg(loc, changes, call_id="c1", cseq=1, max_contacts=5, **kw):
    return loc.apply_register(AOR, changes, call_id=call_id, cseq=cseq, max_contacts=max_contacts, **kw)


def uris(bindings):
    return [b.contact_uri for b in bindings]


def test_register_lookup_and_200_ok_list(env, clock):
    store, loc = env
    out = reg(loc, [cc("sip:a@192.0.2.1:5060", 600, user_agent="UA/1", transport="UDP")])
    assert uris(out) == ["sip:a@192.0.2.1:5060"]
    b = out[0]
    assert (b.aor, b.expires_at, b.call_id, b.cseq, b.source, b.transport, b.user_agent, b.registered_at) == (
        AOR, T0 + 600, "c1", 1, SRC, "UDP", "UA/1", T0)
    assert b.expires_in(T0 + 100) == 500
    assert loc.lookup(AOR) == out
    assert loc.lookup("nobody@sip.example.net") == []
    assert loc.count() == 1
    assert store.pending == 1                       # queued, the registrar flushes


def test_empty_register_is_a_query(env):
    store, loc = env
    reg(loc, [cc("sip:a@192.0.2.1")])
    store.flush()
    assert uris(reg(loc, [], cseq=2)) == ["sip:a@192.0.2.1"]
    assert store.pending == 0


def test_lookup_orders_by_q_then_most_recent(env, clock):
    _, loc = env
    reg(loc, [cc("sip:low@h", q=0.1)], call_id="x", cseq=1)
    clock.t += 1
    reg(loc, [cc("sip:old@h")], call_id="y", cseq=1)
    clock.t += 1
    reg(loc, [cc("sip:new@h")], call_id="z", cseq=1)
    clock.t += 1
    reg(loc, [cc("sip:high@h", q=1.0)], call_id="w", cseq=1)   # no q ranks as 1.0; newest first
    reg(loc, [cc("sip:mid@h", q=0.5)], call_id="v", cseq=1)
    assert uris(loc.lookup(AOR)) == ["sip:high@h", "sip:new@h", "sip:old@h", "sip:mid@h", "sip:low@h"]


def test_refresh_updates_in_place(env, clock):
    store, loc = env
    reg(loc, [cc("sip:a@h", 60)], cseq=1)
    clock.t += 30
    out = reg(loc, [cc("sip:a@h", 120)], cseq=2)
    assert len(out) == 1 and out[0].expires_at == clock.t + 120 and out[0].cseq == 2
    store.flush()
    assert [(b.contact_uri, b.cseq) for b in store.load_bindings()] == [("sip:a@h", 2)]


def test_expires_zero_removes_one_binding(env):
    store, loc = env
    reg(loc, [cc("sip:a@h"), cc("sip:b@h")], cseq=1)
    store.flush()
    out = reg(loc, [cc("sip:a@h", 0)], cseq=2)
    assert uris(out) == ["sip:b@h"]
    store.flush()
    assert uris(store.load_bindings()) == ["sip:b@h"]
    assert loc.count() == 1
    assert reg(loc, [cc("sip:unknown@h", 0)], cseq=3) == out    # removing nothing is fine


def test_same_call_id_lower_or_equal_cseq_is_out_of_order(env):
    store, loc = env
    reg(loc, [cc("sip:a@h", 3600)], call_id="c1", cseq=10)
    store.flush()
    for cseq in (10, 9):
        with pytest.raises(LocationError) as exc:
            reg(loc, [cc("sip:a@h", 0)], call_id="c1", cseq=cseq)
        assert (exc.value.code, exc.value.reason) == (500, "Out of order CSeq")
    assert uris(loc.lookup(AOR)) == ["sip:a@h"]
    assert store.pending == 0
    # a higher CSeq of the same Call-ID, or any CSeq of another Call-ID, applies
    assert uris(reg(loc, [cc("sip:a@h", 60)], call_id="c1", cseq=11)) == ["sip:a@h"]
    assert loc.lookup(AOR)[0].cseq == 11
    assert uris(reg(loc, [cc("sip:a@h", 60)], call_id="other", cseq=1)) == ["sip:a@h"]
    assert loc.lookup(AOR)[0].call_id == "other"


def test_out_of_order_request_changes_nothing_at_all(env):
    """RFC 3261 10.3: all binding updates commit or none do."""
    store, loc = env
    reg(loc, [cc("sip:a@h")], call_id="c1", cseq=5)
    store.flush()
    with pytest.raises(LocationError):
        reg(loc, [cc("sip:new@h"), cc("sip:a@h", 0)], call_id="c1", cseq=4)
    assert uris(loc.lookup(AOR)) == ["sip:a@h"]
    assert loc.count() == 1
    assert store.pending == 0


def test_remove_all_with_star(env):
    store, loc = env
    reg(loc, [cc("sip:a@h"), cc("sip:b@h")], call_id="c1", cseq=5)
    reg(loc, [cc("sip:c@h")], call_id="c2", cseq=1)
    store.flush()
    with pytest.raises(LocationError) as exc:
        loc.remove_all(AOR, call_id="c1", cseq=5)
    assert exc.value.code == 500
    assert loc.count() == 3
    assert loc.remove_all(AOR, call_id="c1", cseq=6) == 3
    assert loc.lookup(AOR) == [] and loc.count() == 0
    store.flush()
    assert store.load_bindings() == []
    assert loc.remove_all(AOR, call_id="c1", cseq=7) == 0


def test_max_contacts(env):
    store, loc = env
    reg(loc, [cc("sip:a@h"), cc("sip:b@h")], call_id="c1", cseq=1, max_contacts=2)
    store.flush()
    with pytest.raises(LocationError) as exc:
        reg(loc, [cc("sip:c@h")], call_id="c2", cseq=1, max_contacts=2)
    assert (exc.value.code, exc.value.reason) == (403, "Too many registered contacts")
    assert uris(loc.lookup(AOR)) == ["sip:a@h", "sip:b@h"] or len(loc.lookup(AOR)) == 2
    assert store.pending == 0
    # replacing one in the same request fits
    out = reg(loc, [cc("sip:a@h", 0), cc("sip:c@h")], call_id="c1", cseq=2, max_contacts=2)
    assert sorted(uris(out)) == ["sip:b@h", "sip:c@h"]
    # a refresh always works, even when the limit was lowered below what is registered
    out = reg(loc, [cc("sip:b@h")], call_id="c1", cseq=3, max_contacts=1)
    assert len(out) == 2
    # 0 means no limit
    out = reg(loc, [cc(f"sip:x{i}@h") for i in range(20)], call_id="c3", cseq=1, max_contacts=0)
    assert len(out) == 22


def test_expired_bindings_do_not_count_toward_max_contacts(env, clock):
    store, loc = env
    reg(loc, [cc("sip:a@h", 60)], call_id="c1", cseq=1, max_contacts=1)
    clock.t += 61
    out = reg(loc, [cc("sip:b@h", 60)], call_id="c2", cseq=1, max_contacts=1)
    assert uris(out) == ["sip:b@h"]
    assert loc.count() == 1
    store.flush()
    assert uris(store.load_bindings()) == ["sip:b@h"]


def test_instance_id_and_reg_id_replace_the_old_flow(env, clock):
    store, loc = env
    reg(loc, [cc("sip:a@192.0.2.1:5060", instance_id=INSTANCE, reg_id=1)], call_id="c1", cseq=1)
    reg(loc, [cc("sip:a@192.0.2.1:5062", instance_id=INSTANCE, reg_id=2)], call_id="c2", cseq=1)
    store.flush()
    clock.t += 10
    # the UA comes back on a new NAT binding, new Contact, new Call-ID: flow 1 is replaced
    new_flow = cc("sip:a@192.0.2.1:6000", instance_id=INSTANCE, reg_id=1, source=("198.51.100.7", 6000))
    out = reg(loc, [new_flow], call_id="c3", cseq=1)
    assert sorted(uris(out)) == ["sip:a@192.0.2.1:5062", "sip:a@192.0.2.1:6000"]
    assert loc.count() == 2
    store.flush()
    assert sorted(uris(store.load_bindings())) == ["sip:a@192.0.2.1:5062", "sip:a@192.0.2.1:6000"]
    # the replacement is not a new contact for max_contacts
    out = reg(loc, [cc("sip:a@192.0.2.1:7000", instance_id=INSTANCE, reg_id=2)], call_id="c4", cseq=1,
              max_contacts=2)
    assert sorted(uris(out)) == ["sip:a@192.0.2.1:6000", "sip:a@192.0.2.1:7000"]
    # instance-id without reg-id (RFC 5627 only) is keyed by the instance alone
    reg(loc, [cc("sip:g@h:1", instance_id="<urn:uuid:other>")], call_id="c5", cseq=1)
    out = reg(loc, [cc("sip:g@h:2", instance_id="<urn:uuid:other>")], call_id="c6", cseq=1)
    assert "sip:g@h:1" not in uris(out) and "sip:g@h:2" in uris(out)


def test_instance_replacement_keeps_the_cseq_rule(env):
    _, loc = env
    reg(loc, [cc("sip:a@h:1", instance_id=INSTANCE, reg_id=1)], call_id="c1", cseq=5)
    with pytest.raises(LocationError):
        reg(loc, [cc("sip:a@h:2", instance_id=INSTANCE, reg_id=1)], call_id="c1", cseq=5)
    assert uris(loc.lookup(AOR)) == ["sip:a@h:1"]


def test_lookup_hides_expired_before_expire_runs(env, clock):
    _, loc = env
    reg(loc, [cc("sip:a@h", 60), cc("sip:b@h", 120)])
    clock.t += 61
    assert uris(loc.lookup(AOR)) == ["sip:b@h"]


def test_expire_drops_from_memory_and_store(env, clock):
    store, loc = env
    reg(loc, [cc("sip:a@h", 60), cc("sip:b@h", 120)], call_id="c1")
    loc.apply_register("other@sip.example.net", [cc("sip:o@h", 90)], call_id="o", cseq=1, max_contacts=5)
    store.flush()
    assert loc.expire(T0 + 59) == 0
    assert store.pending == 0
    assert loc.expire(T0 + 60) == 1
    assert loc.count() == 2
    assert loc.expire(T0 + 60) == 0
    assert loc.expire(T0 + 200) == 2
    assert loc.count() == 0 and loc.lookup(AOR) == []
    store.flush()
    assert store.load_bindings() == []


def test_refreshed_binding_is_not_expired_at_its_old_time(env, clock):
    store, loc = env
    reg(loc, [cc("sip:a@h", 60)], cseq=1)
    clock.t += 50
    reg(loc, [cc("sip:a@h", 60)], cseq=2)              # now expires at T0 + 110
    assert loc.expire(T0 + 61) == 0
    assert uris(loc.lookup(AOR)) == ["sip:a@h"]
    assert loc.expire(T0 + 110) == 1
    assert loc.count() == 0


def test_heap_stays_small_under_frequent_refreshes(env, clock):
    _, loc = env
    for cseq in range(1, 1001):
        clock.t += 1
        reg(loc, [cc("sip:a@h", 3600)], cseq=cseq)
    assert len(loc._heap) <= 2


def test_bindings_persist_and_reload(db_path, clock):
    store = LocalStore(db_path)
    loc = LocationService(store, clock=clock)
    reg(loc, [cc("sip:a@h", 600, q=0.7, instance_id=INSTANCE, reg_id=1, path=("<sip:edge;lr>",),
                 transport="TLS", user_agent="UA")], cseq=3)
    loc.apply_register("b@sip.example.net", [cc("sip:b@h", 600)], call_id="x", cseq=1, max_contacts=1)
    before = loc.lookup(AOR)
    store.flush()
    store.close()

    store = LocalStore(db_path)
    loc = LocationService(store, clock=clock)
    assert loc.lookup(AOR) == before
    assert loc.count() == 2
    # the CSeq rule holds across restarts
    with pytest.raises(LocationError):
        reg(loc, [cc("sip:a@h", 600)], cseq=3)
    store.close()


def test_unflushed_register_is_not_there_after_reopen(db_path, clock):
    store = LocalStore(db_path)
    loc = LocationService(store, clock=clock)
    reg(loc, [cc("sip:a@h")])
    store.close()                                       # no flush: never answered 200
    store = LocalStore(db_path)
    assert LocationService(store, clock=clock).lookup(AOR) == []
    store.close()


def test_expired_while_down_dropped_at_load(db_path, clock):
    store = LocalStore(db_path)
    loc = LocationService(store, clock=clock)
    reg(loc, [cc("sip:short@h", 60), cc("sip:long@h", 3600)])
    store.flush()
    store.close()

    clock.t += 600                                      # the service was down for ten minutes
    store = LocalStore(db_path)
    loc = LocationService(store, clock=clock)
    assert uris(loc.lookup(AOR)) == ["sip:long@h"]
    assert loc.count() == 1 and loc.dropped_at_load == 1
    assert store.pending == 1                           # its deletion is queued
    store.flush()
    assert uris(store.load_bindings()) == ["sip:long@h"]
    store.close()


def test_many_bindings_many_aors(env, clock):
    store, loc = env
    for i in range(2000):
        loc.apply_register(f"u{i}@sip.example.net", [cc(f"sip:u{i}@192.0.2.1:{i}", 60 + i % 100)],
                           call_id=f"c{i}", cseq=1, max_contacts=3)
    assert store.flush() == 2000
    assert loc.count() == 2000
    assert loc.expire(T0 + 109) == 1000
    assert loc.count() == 1000
    store.flush()
    assert len(store.load_bindings()) == 1000


def test_binding_has_no_instance_dict():
    b = Binding(aor=AOR, contact_uri="sip:a@h", expires_at=1.0, q=None, call_id="c", cseq=1, source=SRC,
                transport="UDP", user_agent=None, instance_id=None, reg_id=None, registered_at=0.0)
    assert not hasattr(b, "__dict__")


def test_memory_per_binding_is_modest(env, clock):
    """About 1 KB a binding everything included (100k bindings: ~100 MB at most)."""
    import tracemalloc

    _, loc = env
    n = 20_000
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for i in range(n):
        loc.apply_register(
            f"user{i}@sip.example.net",
            [cc(f"sip:user{i}@10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}:5060;transport=udp", 3600,
                user_agent="Yealink SIP-T46U 66.86.0.15", source=("198.51.100.7", 1024 + i % 60000))],
            call_id=f"{i:08x}-4c2d-9f0e-0123456789ab", cseq=1, max_contacts=5,
        )
    # the store queue holds references to the same objects; measure the whole lot
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert loc.count() == n
    assert used / n < 1024, f"{used / n:.0f} bytes a binding"


def test_contact_key_gives_uri_equivalence(db_path, clock):
    """With a key function, an equivalent Contact spelled differently refreshes the binding."""
    store = LocalStore(db_path)

    def key(uri: str) -> str:     # a toy canonical form: scheme and host are case-insensitive
        scheme, _, rest = uri.partition(":")
        user, _, host = rest.rpartition("@")
        return f"{scheme.lower()}:{user}@{host.lower()}"

    loc = LocationService(store, clock=clock, contact_key=key)
    reg(loc, [cc("sip:a@Host.Example")], cseq=1)
    store.flush()
    out = reg(loc, [cc("SIP:a@host.example", 120)], cseq=2)
    assert uris(out) == ["SIP:a@host.example"] and loc.count() == 1
    with pytest.raises(LocationError):
        reg(loc, [cc("sip:a@HOST.example")], cseq=2)
    store.flush()
    assert uris(store.load_bindings()) == ["SIP:a@host.example"]   # the old spelling's row went
    # without a key function the two spellings are two bindings
    plain = LocationService(store, clock=clock)
    plain.apply_register(AOR, [cc("sip:a@Host.Example")], call_id="p", cseq=1, max_contacts=5)
    assert plain.count() == 2
    store.close()


def test_same_contact_twice_in_one_request(env):
    _, loc = env
    out = reg(loc, [cc("sip:a@h", 60), cc("sip:a@h", 120)], cseq=1)
    assert len(out) == 1 and out[0].expires_at == T0 + 120


def test_register_then_remove_in_one_request(env):
    store, loc = env
    reg(loc, [cc("sip:a@h")], cseq=1)
    store.flush()
    assert reg(loc, [cc("sip:a@h", 0), cc("sip:a@h", 60)], cseq=2)[0].expires_at == T0 + 60
    store.flush()
    assert [b.expires_at for b in store.load_bindings()] == [T0 + 60]
