"""Headers, typed accessors, serialisation and make_response."""

from __future__ import annotations

import pytest

from sipsync.sip.errors import SipParseError
from sipsync.sip.headers import Via
from sipsync.sip.message import (
    COMPACT_FORMS,
    REASON_PHRASES,
    Headers,
    Request,
    Response,
    make_response,
)
from sipsync.sip.parser import parse_message
from sipsync.sip.uri import SipUri

INVITE = (
    b"INVITE sip:bob@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.example.com;branch=z9hG4bK776asdhds,"
    b" SIP/2.0/UDP proxy.example.com;branch=z9hG4bK2\r\n"
    b"Via: SIP/2.0/TCP edge.example.com;branch=z9hG4bK3\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@example.com>\r\n"
    b"From: Alice <sip:alice@example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b'Contact: <sip:alice@pc33.example.com>, "Second" <sip:alice@mobile.example.com>;q=0.5\r\n'
    b"X-Custom: one, two\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 4\r\n"
    b"\r\n"
    b"v=0\n"
)


def parse_request(data: bytes = INVITE) -> Request:
    msg = parse_message(data)
    assert isinstance(msg, Request)
    return msg


def test_accessors() -> None:
    msg = parse_request()
    assert msg.method == "INVITE" and msg.uri.user == "bob" and msg.version == "SIP/2.0"
    assert [v.host for v in msg.vias] == ["pc33.example.com", "proxy.example.com", "edge.example.com"]
    assert msg.via.branch == "z9hG4bK776asdhds"
    assert msg.call_id == "a84b4c76e66710@pc33.example.com"
    assert (msg.cseq.seq, msg.cseq.method) == (314159, "INVITE")
    assert msg.from_.tag == "1928301774" and msg.to.tag is None and msg.to.display_name == "Bob"
    assert [c.uri.host for c in msg.contacts] == ["pc33.example.com", "mobile.example.com"]
    assert msg.contacts[1].params == {"q": "0.5"} and not msg.contact_star
    assert msg.max_forwards == 70 and msg.expires is None
    assert msg.content_type == "application/sdp" and msg.body == b"v=0\n"
    assert msg.is_request


def test_accessors_are_cached_and_invalidated_by_mutation() -> None:
    msg = parse_request()
    assert msg.via is msg.via
    assert msg.cseq is msg.cseq
    msg.headers.remove_first("Via")
    assert msg.via.host == "proxy.example.com"
    msg.headers.set("CSeq", "2 INVITE")
    assert msg.cseq.seq == 2
    msg.headers.insert_first("Via", "SIP/2.0/UDP me.example.com;branch=z9hG4bKnew")
    assert msg.via.host == "me.example.com" and len(msg.vias) == 3


def test_a_mutation_drops_only_the_views_of_the_header_it_changed() -> None:
    msg = parse_request()
    via, cseq, from_, to, call_id = msg.via, msg.cseq, msg.from_, msg.to, msg.call_id
    max_forwards = msg.max_forwards
    msg.headers.insert_first("Via", "SIP/2.0/UDP me.example.com;branch=z9hG4bKnew")
    msg.headers.add("Record-Route", "<sip:me.example.com;lr>")
    msg.headers.set("Max-Forwards", str(max_forwards - 1))
    assert msg.via is not via and msg.via.host == "me.example.com"
    assert msg.max_forwards == max_forwards - 1
    assert msg.cseq is cseq and msg.from_ is from_ and msg.to is to and msg.call_id == call_id
    assert msg.headers.get_all("Record-Route") == ["<sip:me.example.com;lr>"]
    msg.headers.set("To", "<sip:bob@example.com>;tag=x")
    assert msg.to is not to and msg.to.tag == "x" and msg.from_ is from_
    assert msg.headers.remove("Subject") == 0 and msg.cseq is cseq
    assert msg.expires is None
    msg.headers.add("Expires", "60")  # an integer header's view goes with its header, whichever
    assert msg.expires == 60 and msg.max_forwards == max_forwards - 1


def test_pushed_and_replaced_vias_keep_their_parsed_view() -> None:
    msg = parse_request()
    stamped = msg.via.copy()
    stamped.params["received"] = "192.0.2.1"
    msg.replace_top_via(stamped)
    assert msg.via is stamped and len(msg.vias) == 3
    ours = Via("UDP", "me.example.com", 5060, {"branch": "z9hG4bKours", "rport": None})
    msg.push_via(ours)
    assert msg.via is ours
    assert msg.headers.get_all("Via")[:2] == [str(ours), str(stamped)]
    again = parse_message(msg.to_bytes())
    assert str(again.via) == str(ours) and again.vias[1].received == "192.0.2.1"
    bare = Request("OPTIONS", "sip:x@example.com")
    with pytest.raises(SipParseError):
        bare.replace_top_via(ours)


def test_missing_and_malformed_headers_raise() -> None:
    msg = parse_request()
    msg.headers.remove("Call-ID")
    with pytest.raises(SipParseError) as info:
        msg.call_id  # noqa: B018
    assert info.value.header == "Call-ID"
    msg.headers.set("Max-Forwards", "abc")
    with pytest.raises(SipParseError):
        msg.max_forwards  # noqa: B018
    msg.headers.remove("Via")
    with pytest.raises(SipParseError):
        msg.via  # noqa: B018
    with pytest.raises(SipParseError):
        msg.vias  # noqa: B018
    msg.headers.add("To", "<sip:other@example.com>")
    with pytest.raises(SipParseError, match="multiple To"):
        msg.to  # noqa: B018


def test_contact_star() -> None:
    msg = parse_request(
        INVITE.replace(
            b'Contact: <sip:alice@pc33.example.com>, "Second" <sip:alice@mobile.example.com>;q=0.5',
            b"Contact: *",
        )
    )
    assert msg.contact_star and msg.contacts == []
    msg.headers.add("Contact", "<sip:x@y>")
    with pytest.raises(SipParseError):
        msg.contacts  # noqa: B018


def test_headers_case_insensitive_and_compact() -> None:
    headers = Headers([("v", "SIP/2.0/UDP a"), ("VIA", "SIP/2.0/UDP b"), ("x-thing", "1")])
    assert list(headers) == [("Via", "SIP/2.0/UDP a"), ("Via", "SIP/2.0/UDP b"), ("x-thing", "1")]
    assert headers.get("via") == "SIP/2.0/UDP a" and headers.get("X-THING") == "1"
    assert "V" in headers and "Route" not in headers and len(headers) == 3
    assert headers.get("Route") is None and headers.get("Route", "d") == "d"
    assert set(COMPACT_FORMS) >= {"v", "f", "t", "i", "m", "l", "c", "k", "s"}


def test_get_all_splits_only_list_headers() -> None:
    headers = Headers(
        [
            ("Allow", "INVITE, ACK"),
            ("Allow", "BYE"),
            ("WWW-Authenticate", 'Digest realm="a", nonce="b"'),
            ("Date", "Sat, 13 Nov 2010 23:29:00 GMT"),
            ("X-Custom", "one, two"),
        ]
    )
    assert headers.get_all("allow") == ["INVITE", "ACK", "BYE"]
    assert headers.get_all("WWW-Authenticate") == ['Digest realm="a", nonce="b"']
    assert headers.get_all("Date") == ["Sat, 13 Nov 2010 23:29:00 GMT"]
    assert headers.get_all("X-Custom") == ["one, two"]


def test_insert_first_set_remove() -> None:
    headers = Headers(
        [("From", "a"), ("Record-Route", "<sip:p1>"), ("To", "b"), ("Record-Route", "<sip:p2>")]
    )
    headers.insert_first("Record-Route", "<sip:p0>")
    assert headers.get_all("Record-Route") == ["<sip:p0>", "<sip:p1>", "<sip:p2>"]
    assert list(headers)[1] == ("Record-Route", "<sip:p0>")
    headers.insert_first("Via", "SIP/2.0/UDP x")
    assert list(headers)[0] == ("Via", "SIP/2.0/UDP x")
    headers.set("Record-Route", "<sip:only>")
    assert list(headers)[2] == ("Record-Route", "<sip:only>")
    assert headers.get_all("Record-Route") == ["<sip:only>"]
    headers.set("Subject", "new")
    assert list(headers)[-1] == ("Subject", "new")
    assert headers.remove("record-route") == 1 and headers.remove("nothing") == 0
    assert headers.remove_first("Nothing") is None
    with pytest.raises(ValueError):
        headers.add("X", "a\r\nInjected: yes")
    with pytest.raises(ValueError):
        headers.add("Bad Name", "x")
    with pytest.raises(ValueError):
        headers.set("", "x")


def test_remove_first_pops_one_value_of_a_combined_line() -> None:
    headers = Headers([("Via", "SIP/2.0/UDP a, SIP/2.0/UDP b"), ("Via", "SIP/2.0/UDP c")])
    assert headers.remove_first("Via") == "SIP/2.0/UDP a"
    assert headers.get_all("Via") == ["SIP/2.0/UDP b", "SIP/2.0/UDP c"]
    assert headers.remove_first("Via") == "SIP/2.0/UDP b"
    assert headers.remove_first("Via") == "SIP/2.0/UDP c"
    assert "Via" not in headers


def test_headers_copy_and_equality() -> None:
    headers = Headers([("To", "a")])
    other = headers.copy()
    other.add("From", "b")
    assert len(headers) == 1 and headers != other and headers == Headers([("t", "a")])


def test_to_bytes_round_trip_and_content_length_rewrite() -> None:
    msg = parse_request()
    msg.body = b"v=0\r\no=x\r\n"
    wire = msg.to_bytes()
    assert b"Content-Length: 10\r\n" in wire and wire.endswith(b"\r\n\r\nv=0\r\no=x\r\n")
    again = parse_request(wire)
    assert list(again.headers) == list(msg.headers)[:-2] + [
        ("Content-Type", "application/sdp"),
        ("Content-Length", "10"),
    ]
    assert again.body == msg.body
    assert bytes(again) == wire


def test_to_bytes_adds_content_length_and_reflects_uri_changes() -> None:
    req = Request("OPTIONS", SipUri.parse("sip:a@example.com"), Headers([("Call-ID", "x")]))
    req.uri.params["transport"] = "tcp"
    assert req.to_bytes() == (
        b"OPTIONS sip:a@example.com;transport=tcp SIP/2.0\r\nCall-ID: x\r\nContent-Length: 0\r\n\r\n"
    )
    req.uri = SipUri.parse("sip:b@example.com")
    assert req.raw_uri == "sip:b@example.com"


def test_unknown_headers_and_order_preserved() -> None:
    data = (
        b"FOO sip:x@example.com SIP/2.0\r\nZ-Last: 1\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
        b"a-header: weird ;;,, value\r\nl: 0\r\n\r\n"
    )
    msg = parse_message(data)
    assert msg.to_bytes() == data.replace(b"l: 0", b"Content-Length: 0")


def test_response_defaults() -> None:
    assert Response(486).reason == "Busy Here"
    assert Response(299).reason == "OK" and Response(499).reason == "Client Error"
    assert REASON_PHRASES[481] == "Call/Transaction Does Not Exist"
    assert Response(200, "Fine").to_bytes().startswith(b"SIP/2.0 200 Fine\r\n")
    assert not Response(200).is_request


def test_make_response_copies_rfc3261_headers() -> None:
    req = parse_request()
    resp = make_response(req, 180, to_tag="abc", extra_headers=[("Contact", "<sip:bob@host>")])
    assert (resp.status, resp.reason) == (180, "Ringing")
    names = [name for name, _ in resp.headers]
    assert names == ["Via", "Via", "To", "From", "Call-ID", "CSeq", "Contact"]
    assert resp.headers.get_all("Via") == req.headers.get_all("Via")
    assert resp.to.tag == "abc" and resp.from_.tag == "1928301774"
    assert resp.call_id == req.call_id and resp.cseq == req.cseq
    again = parse_message(resp.to_bytes())
    assert isinstance(again, Response) and again.status == 180 and again.to.tag == "abc"


def test_make_response_keeps_existing_to_tag_and_custom_reason() -> None:
    req = parse_request(INVITE.replace(b"To: Bob <sip:bob@example.com>", b"To: <sip:bob@example.com>;tag=x"))
    resp = make_response(req, 200, "Very OK", to_tag="ignored")
    assert resp.to.tag == "x" and resp.reason == "Very OK"
    assert make_response(req, 100).headers.get("To") == "<sip:bob@example.com>;tag=x"


@pytest.mark.parametrize(
    "to, tag",
    [
        ("<sip:bob@example.com>", "t1"),
        ("<sip:bob@example.com>;tag=already", "t1"),
        ('"tag=x" <sip:b@e>', "t2"),
    ],
)
def test_render_response_matches_make_response(to, tag):
    from sipsync.sip.message import make_response, render_response
    from sipsync.sip.parser import parse_message

    request = parse_message(
        (
            "REGISTER sip:example.com SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-a;rport, SIP/2.0/UDP 10.0.0.9;branch=z9hG4bK-b\r\n"
            "Via: SIP/2.0/TCP 10.0.0.8;branch=z9hG4bK-c\r\n"
            f"From: <sip:bob@example.com>;tag=f\r\nTo: {to}\r\nCall-ID: c@h\r\nCSeq: 7 REGISTER\r\n"
            "X-Other: kept out\r\nContent-Length: 0\r\n\r\n"
        ).encode()
    )
    extra = [("Contact", "<sip:bob@10.0.0.1>;expires=60"), ("Server", "test")]
    expected = make_response(request, 200, to_tag=tag, extra_headers=extra).to_bytes()
    assert render_response(request, 200, to_tag=tag, extra_headers=extra) == expected
    stamped = render_response(
        request, 200, to_tag=tag, top_via="SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-a;rport=1"
    )
    vias = parse_message(stamped).headers.get_all("Via")
    assert vias == [
        "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-a;rport=1",
        "SIP/2.0/UDP 10.0.0.9;branch=z9hG4bK-b",
        "SIP/2.0/TCP 10.0.0.8;branch=z9hG4bK-c",
    ]


def test_headers_from_trusted_values_normalise_names_and_keep_order():
    from sipsync.sip.message import Headers

    items = [("v", "SIP/2.0/UDP a;branch=z9hG4bK1"), ("call-id", "c1"), ("Route", "<sip:x>")]
    headers = Headers.from_trusted(items)
    assert headers.get("Via") == "SIP/2.0/UDP a;branch=z9hG4bK1" and headers.get("Call-ID") == "c1"
    assert [name for _, name, _ in headers._items] == ["Via", "Call-ID", "Route"]


def test_the_index_kept_up_to_date_agrees_with_one_built_afresh() -> None:
    """Every kind of mutation, in a seeded random order, on headers whose index is in use."""
    import random

    rng = random.Random(4475)
    names = ["Via", "Route", "Record-Route", "To", "Max-Forwards", "Supported", "X-Custom"]
    headers = Headers([
        ("Via", "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2"),
        ("Route", "<sip:p1;lr>"), ("To", "<sip:bob@x>"), ("Via", "SIP/2.0/UDP c"),
    ])  # fmt: skip
    for step in range(2000):
        name, value = rng.choice(names), f"v{step}"
        operation = rng.randrange(6)
        if operation == 5:
            assert headers.replace_first(name, value) is (headers.get(name) is not None)
        elif operation == 0:
            headers.add(name, value)
        elif operation == 1:
            headers.insert_first(name, value)
        elif operation == 2:
            headers.set(name, value)
        elif operation == 3:
            headers.remove(name)
        else:
            headers.remove_first(name)
        fresh = Headers(list(headers))
        for checked in names:
            assert headers.get(checked) == fresh.get(checked), (step, checked)
            assert headers.get_all(checked) == fresh.get_all(checked), (step, checked)
        copied = headers.copy()
        assert copied.get_all("Via") == fresh.get_all("Via")


def test_replace_first_takes_the_place_of_the_first_value_only() -> None:
    headers = Headers([
        ("Via", "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2"), ("Via", "SIP/2.0/UDP c"),
    ])  # fmt: skip
    assert headers.replace_first("v", "SIP/2.0/UDP x") is True
    assert headers.get_all("Via") == ["SIP/2.0/UDP x", "SIP/2.0/UDP b;branch=z9hG4bK2", "SIP/2.0/UDP c"]
    assert Headers().replace_first("Via", "SIP/2.0/UDP x") is False
    with pytest.raises(ValueError):
        headers.replace_first("Via", "SIP/2.0/UDP x\r\nX-Injected: 1")
