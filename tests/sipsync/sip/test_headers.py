"""Via, CSeq and comma-list splitting."""

from __future__ import annotations

import pytest

from sipsync.sip.errors import SipParseError
from sipsync.sip.headers import MAX_CSEQ, CSeq, Via, split_header_values


def test_via_basic() -> None:
    via = Via.parse("SIP/2.0/udp 10.0.0.1:5060;branch=z9hG4bK1;rport;received=192.0.2.4")
    assert (via.transport, via.host, via.port) == ("UDP", "10.0.0.1", 5060)
    assert via.branch == "z9hG4bK1" and via.received == "192.0.2.4"
    assert via.has_rport and via.rport is None
    assert via.sent_by == ("10.0.0.1", 5060)
    assert list(via.params) == ["branch", "rport", "received"]
    assert str(via) == "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport;received=192.0.2.4"


def test_via_rport_value_and_ipv6() -> None:
    via = Via.parse("SIP/2.0/TCP [2001:DB8::9:1]:5070;rport=1234;branch=z9hG4bKx")
    assert via.host == "[2001:db8::9:1]" and via.port == 5070 and via.rport == 1234
    assert Via.parse(str(via)) == via


def test_via_with_lws_everywhere() -> None:
    via = Via.parse("SIP  /    2.0   / UDP  192.168.255.111   ; branch= z9hG4bK30239")
    assert (via.protocol, via.transport) == ("SIP/2.0", "UDP")
    assert (via.host, via.branch) == ("192.168.255.111", "z9hG4bK30239")


def test_via_no_params_and_maddr() -> None:
    via = Via.parse("SIP/2.0/WS df7jal23ls0d.invalid")
    assert via.params == {} and via.branch is None and not via.has_rport
    assert Via.parse("SIP/2.0/UDP h;maddr=224.2.0.1;ttl=16").maddr == "224.2.0.1"


def test_via_copy_is_independent() -> None:
    via = Via.parse("SIP/2.0/UDP h;branch=z9hG4bK1")
    other = via.copy()
    other.params["received"] = "1.2.3.4"
    assert "received" not in via.params


@pytest.mark.parametrize(
    "text",
    [
        "", "SIP/2.0/UDP", "SIP/2.0/UDP ", "SIP/2.0 UDP host", "SIP/2.0/UDP host:99999", "SIP/2.0/UDP host;;",
        "SIP/2.0/UDP host;rport=abc", "SIP/2.0/UDP host;received=not_an_ip", "SIP/2.0/UDP [::1",
        "SIP/2.0/UDP host;ttl=300", "SIP/2.0/U<P host", "SIP/2.0/UDP host;branch=",
    ],
)
def test_via_malformed(text: str) -> None:
    with pytest.raises(SipParseError) as info:
        Via.parse(text)
    assert info.value.header == "Via"


def test_cseq() -> None:
    cseq = CSeq.parse("0009\t INVITE")
    assert (cseq.seq, cseq.method) == (9, "INVITE") and str(cseq) == "9 INVITE"
    assert cseq == CSeq(9, "INVITE") and hash(cseq) == hash(CSeq(9, "INVITE"))


@pytest.mark.parametrize(
    "text", ["", "1", "INVITE", "x INVITE", "-1 INVITE", "2147483648 INVITE", "1 INV ITE", "١ INVITE"]
)
def test_cseq_malformed(text: str) -> None:
    with pytest.raises(SipParseError):
        CSeq.parse(text)


@pytest.mark.parametrize(
    ("value", "parts"),
    [
        ("a, b ,c", ["a", "b", "c"]),
        ("single", ["single"]),
        ("", []),
        ('"Doe, John" <sip:j@x>, <sip:a;p=1,2>', ['"Doe, John" <sip:j@x>', "<sip:a;p=1,2>"]),
        ('"a\\", b" <sip:x>, c', ['"a\\", b" <sip:x>', "c"]),
        ("a,,b,", ["a", "b"]),
    ],
)
def test_split_header_values(value: str, parts: list[str]) -> None:
    assert split_header_values(value) == parts


def test_via_and_cseq_fast_paths_agree_with_slow_paths() -> None:
    import random

    rng = random.Random(7)
    samples = [
        "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport", "SIP/2.0/TCP h.example.com;received=1.2.3.4",
        "SIP/2.0/UDP h;rport=5060;ttl=3;maddr=x", "SIP/2.0/WSS abc.invalid;branch=z9hG4bK-x.1",
        "  SIP/2.0/UDP h:99999 ", "SIP/2.0/UDP a..b;x",
    ]
    chars = " \t;:=[]./-_0123456789abSIPU,\"%"

    def mutate(text: str) -> str:
        out = list(text)
        for _ in range(rng.randint(1, 3)):
            pos = rng.randrange(len(out) + 1)
            if rng.random() < 0.5 and out:
                del out[min(pos, len(out) - 1)]
            else:
                out.insert(pos, rng.choice(chars))
        return "".join(out)

    def via_fields(parse, text):  # type: ignore[no-untyped-def]
        try:
            via = parse(text)
        except SipParseError:
            return None
        return (via.protocol, via.transport, via.host, via.port, via.params)

    for text in samples + [mutate(rng.choice(samples)) for _ in range(3000)]:
        assert via_fields(Via.parse, text) == via_fields(Via._parse_wrapped, text), text

    assert str(CSeq.parse(" 0009 \tBYE ")) == "9 BYE"
    cseqs = ["2 INVITE", "10 ACK", "2147483647 BYE", "1 CANCEL", " 7\tREFER ", "3 FOO", "١ INVITE"]

    def cseq_fields(parse, text):  # type: ignore[no-untyped-def]
        try:
            cseq = parse(text)
        except SipParseError:
            return None
        return (cseq.seq, cseq.method)

    for text in cseqs + [mutate(rng.choice(cseqs)) for _ in range(3000)]:
        assert cseq_fields(CSeq.parse, text) == cseq_fields(CSeq._parse, text), text
    assert CSeq.parse("2147483647 X").seq == MAX_CSEQ
