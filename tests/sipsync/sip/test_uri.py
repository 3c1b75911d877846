"""SipUri and NameAddr."""

from __future__ import annotations

import pytest

from sipsync.sip.errors import SipParseError, UnsupportedUriScheme
from sipsync.sip.uri import NameAddr, SipUri


def test_parse_full_sip_uri() -> None:
    uri = SipUri.parse("SIPS:alice:secret@[2001:DB8::1]:5061;Transport=TLS;lr?subject=hi%20there&x=y")
    assert uri.scheme == "sips"
    assert (uri.user, uri.password) == ("alice", "secret")
    assert (uri.host, uri.port) == ("[2001:db8::1]", 5061)
    assert uri.params == {"transport": "TLS", "lr": None}
    assert uri.headers == {"subject": "hi there", "x": "y"}
    assert uri.transport == "TLS"
    assert str(uri) == "sips:alice:secret@[2001:db8::1]:5061;transport=TLS;lr?subject=hi%20there&x=y"


@pytest.mark.parametrize(
    "text",
    [
        "sip:alice@example.com",
        "sip:example.com",
        "sip:192.0.2.1:5060;transport=udp",
        "sip:+1555%20123@gw.example.net;user=phone",
        "sip:user;par=u%40example.net@example.com",
        "sips:%00@host.example.com;n%61me=v%61lue%25%34%31",
        "sip:[::ffff:192.0.2.2]",
        "tel:+1-201-555-0123;phone-context=example.com",
    ],
)
def test_round_trip(text: str) -> None:
    uri = SipUri.parse(text)
    assert SipUri.parse(str(uri)) == uri


def test_escapes_are_decoded_and_reencoded() -> None:
    uri = SipUri.parse("sip:sips%3Auser%40example.com@example.net")
    assert uri.user == "sips:user@example.com"
    assert str(uri) == "sip:sips%3Auser%40example.com@example.net"


def test_host_is_lowercased_and_transport_none_by_default() -> None:
    uri = SipUri.parse("sip:Bob@Example.COM")
    assert uri.user == "Bob" and uri.host == "example.com"
    assert uri.transport is None and uri.host_port == "example.com"


def test_tel_uri() -> None:
    uri = SipUri.parse("tel:+15551234;ext=12")
    assert (uri.scheme, uri.user, uri.host) == ("tel", "+15551234", "")
    assert uri.params == {"ext": "12"}


def test_copy_changes_and_isolates() -> None:
    uri = SipUri.parse("sip:alice@example.com;lr")
    other = uri.copy(host="proxy.example.net", port=5080)
    other.params["transport"] = "tcp"
    assert str(uri) == "sip:alice@example.com;lr"
    assert str(other) == "sip:alice@proxy.example.net:5080;lr;transport=tcp"
    with pytest.raises(AttributeError):
        uri.copy(nonsense=1)


@pytest.mark.parametrize(
    "text",
    [
        "sip:", "sip:@host", "sip:host:99999", "sip:host:abc", "sip:[::1", "sip:[zz::1]", "sip:a b@c",
        "sip:host;=x", "sip:host?novalue", "sip:ho_st", "sip:-host", "sip:user@", "sip:%zz@host", "nocolon",
        "sip:[2001:db8::1]x", "tel:", "tel:abc!",
    ],
)
def test_malformed(text: str) -> None:
    with pytest.raises(SipParseError):
        SipUri.parse(text)


def test_unknown_scheme_has_its_own_error() -> None:
    with pytest.raises(UnsupportedUriScheme) as info:
        SipUri.parse("http://www.example.com")
    assert info.value.scheme == "http"


def test_name_addr_with_quoted_display_name() -> None:
    addr = NameAddr.parse('"Alice \\"A\\"" <sip:alice@example.com;transport=udp> ;tag = abc;expires=60')
    assert addr.display_name == 'Alice "A"'
    assert addr.uri.params == {"transport": "udp"}
    assert addr.params == {"tag": "abc", "expires": "60"} and addr.tag == "abc"
    assert NameAddr.parse(str(addr)) == addr


def test_name_addr_token_display_name_and_no_space() -> None:
    addr = NameAddr.parse("Alice  Smith<sip:alice@example.com>")
    assert addr.display_name == "Alice Smith"
    assert NameAddr.parse("<sip:a@b>").display_name is None


def test_addr_spec_params_belong_to_header() -> None:
    addr = NameAddr.parse("sip:bob@example.com;tag=1;user=phone")
    assert addr.uri.params == {} and addr.params == {"tag": "1", "user": "phone"}
    assert str(addr) == "<sip:bob@example.com>;tag=1;user=phone"


def test_quoted_param_value_kept_verbatim() -> None:
    addr = NameAddr.parse('<sip:a@b>;x="a;b,c"')
    assert addr.params == {"x": '"a;b,c"'}


@pytest.mark.parametrize(
    "text",
    [
        '"unterminated <sip:a@b>',
        "Bell, Alexander <sip:a@b>",
        "<sip:a@b",
        "<sip:a@b> junk",
        "sip:a@b?Route=x",
        "<sip:a@b>;;",
        '"quoted" sip:a@b',
        "",
    ],
)
def test_name_addr_malformed(text: str) -> None:
    with pytest.raises(SipParseError):
        NameAddr.parse(text, "To")


def test_name_addr_error_names_header() -> None:
    with pytest.raises(SipParseError) as info:
        NameAddr.parse("<sip:a@b", "From")
    assert info.value.header == "From" and "From" in str(info.value)


def test_ipv6_three_colon_form_is_tolerated_and_normalised() -> None:
    assert SipUri.parse("sip:[2001:db8:::192.0.2.1]").host == "[2001:db8::192.0.2.1]"
    with pytest.raises(SipParseError):
        SipUri.parse("sip:[2001:db8:::1]")


# --- the regex fast paths must agree with the careful parsers -----------------------------------

URI_SAMPLES = [
    "sip:alice@example.com", "sip:alice@example.com:5060;transport=tcp;lr", "sips:b@[2001:db8::1]:5061",
    "sip:+15551234@gw.example.net;user=phone", "sip:example.com", "sip:a.b-c@h-1.example.com.;x=y",
    "sip:u@h;maddr=[2001:db8::1]", "SIP:a@B.com", "sip:a@b:65535", "sip:a@b:65536", "sip:a@b..c",
]
NAME_ADDR_SAMPLES = [
    '"Alice" <sip:alice@example.com>;tag=123', "Bob <sip:bob@example.com>", "<sip:x@y>;expires=60;q=0.5",
    '  "" <sip:x@y> ', "A  B\t<sip:x@y> ;tag=z", "<sip:x@y>;tag=", "<sips:x@y:5061;lr>;+sip.instance=a",
]
CHARS = " \t;:@<>\"=?&%[].-_0123456789abcxyzSIP,\\\x00é"


def _mutations(samples: list[str], count: int, seed: int) -> list[str]:
    import random

    rng = random.Random(seed)
    out = list(samples)
    for _ in range(count):
        text = list(rng.choice(samples))
        for _ in range(rng.randint(1, 3)):
            pos = rng.randrange(len(text) + 1)
            if rng.random() < 0.5 and text:
                del text[min(pos, len(text) - 1)]
            else:
                text.insert(pos, rng.choice(CHARS))
        out.append("".join(text))
    return out


def _uri_fields(uri: SipUri) -> tuple[object, ...]:
    return (uri.scheme, uri.user, uri.password, uri.host, uri.port, uri.params, uri.headers)


def test_uri_fast_path_agrees_with_slow_path() -> None:
    for text in _mutations(URI_SAMPLES, 3000, 1):
        try:
            fast = _uri_fields(SipUri.parse(text))
        except SipParseError:
            fast = None
        try:
            slow = _uri_fields(SipUri._parse(text))
        except SipParseError:
            slow = None
        assert fast == slow, text


def test_name_addr_fast_path_agrees_with_slow_path() -> None:
    for text in _mutations(NAME_ADDR_SAMPLES, 3000, 2):
        try:
            fast = NameAddr.parse(text)
            fast_fields = (fast.display_name, _uri_fields(fast.uri), fast.params)
        except SipParseError:
            fast_fields = None
        try:
            slow = NameAddr._parse(text.strip(" \t"))
            slow_fields = (slow.display_name, _uri_fields(slow.uri), slow.params)
        except SipParseError:
            slow_fields = None
        assert fast_fields == slow_fields, text
