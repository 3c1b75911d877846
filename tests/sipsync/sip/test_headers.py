"""Via, CSeq and comma-list splitting."""

from __future__ import annotations

import pytest

from sipsync.sip.errors import SipParseError
from sipsync.sip.headers import CSeq, Via, split_header_values


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
