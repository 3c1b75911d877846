"""RFC 4475 (section 3) and RFC 5118 (section 4) torture messages, one file each under torture/.

The files hold the on-the-wire bytes (CRLF line ends). Notes on the transcription:

* mpart01: the RFC's binary S/MIME octets are replaced by deterministic binary filler of the
  same length; the MIME structure, headers and Content-Length (553) are the RFC's.
* multi01: its body ends with an empty line, which the Content-Length (154) counts.
* ipv6-in-sdp, mult-ip-in-sdp, ipv4-mapped-ipv6: RFC 5118 computed Content-Length with bare-LF
  line ends; the files carry the length of the CRLF body so that the IPv6 content is what is tested.
* ipv6-bug-abnf-3-colons, ipv6-correct-abnf-2-colons: the RFC text omits the empty line that ends
  the header section; the files include it (it is on the wire).

Every message has exactly one expected outcome, named in its test id:

* ``valid``: parses, passes ``validate_message``, fields have the listed values, round-trips.
* ``parse_error_400`` / ``parse_error_505`` / ``parse_error_drop``: ``parse_message`` raises and
  ``try_error_response`` answers 400 / 505 or gives ``None`` (responses are dropped).
* ``parse_ok_reject_400`` / ``parse_ok_reject_drop``: the framing is fine (parse succeeds) but a
  header accessor / ``validate_message`` raises, and ``try_error_response`` answers 400 or ``None``.
* ``parse_ok_416``: the Request-URI has an unsupported scheme (``UnsupportedUriScheme``);
  ``try_error_response`` answers 416.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from sipsync.sip.errors import SipParseError, UnsupportedUriScheme, UnsupportedVersion
from sipsync.sip.message import Request, Response
from sipsync.sip.parser import parse_message, try_error_response, validate_message
from sipsync.sip.sdp import SessionDescription

TORTURE = Path(__file__).parent / "torture"


def load(name: str) -> bytes:
    return (TORTURE / f"{name}.sip").read_bytes()


# --- checks for valid messages -------------------------------------------------------------


def check_wsinv(m: Request) -> None:
    assert m.method == "INVITE"
    assert m.raw_uri == "sip:vivekg@chair-dnrc.example.com;unknownparam"
    assert m.uri.params == {"unknownparam": None}
    assert m.to.uri.user == "vivekg" and m.to.tag == "1918181833n"
    assert m.from_.display_name == 'J Rosenberg \\"' and m.from_.tag == "98asjd8"
    assert m.max_forwards == 68
    assert m.call_id == "wsinv.ndaksdj@192.0.2.1"
    assert (m.cseq.seq, m.cseq.method) == (9, "INVITE")
    assert [(v.transport, v.host, v.branch) for v in m.vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert m.via.has_rport and m.via.rport is None
    assert m.headers.get("Subject") == ""
    assert m.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert m.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    assert m.headers.get_all("Route") == ["<sip:services.example.com;lr;unknownwith=value;unknown-no-value>"]
    (contact,) = m.contacts
    assert contact.display_name == 'Quoted string ""'
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert len(m.body) == 150 and m.content_type == "application/sdp"


def check_intmeth(m: Request) -> None:
    method = "!interesting-Method0123456789_*+`.%indeed'~"
    assert m.method == method and m.cseq.method == method and m.cseq.seq == 139122385
    assert m.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert m.uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert m.uri.host == "example.com"
    assert m.via.branch == "z9hG4bK-.!%66*_+`'~"
    assert m.to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert m.to.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert m.from_.display_name == "token1~` token2'+_ token3*%!.-"
    assert m.from_.tag == "_token~1'+`*%!-."
    assert m.from_.params["fromparam''~+*_!.-%"] == '"работающий"'
    assert m.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert m.max_forwards == 255
    assert m.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff大停電"


def check_esc01(m: Request) -> None:
    assert m.uri.user == "sips:user@example.com" and m.uri.host == "example.net"
    assert m.to.uri.user == "user"
    assert m.from_.uri.user == "I have spaces"
    assert m.call_id == "esc01.239409asdfakjkn23onasd0-3234"
    assert m.content_type == "application/sdp"
    (contact,) = m.contacts
    assert contact.uri.user == "caller"
    assert contact.uri.params == {"lr": None, "name": "value%41"}


def check_escnull(m: Request) -> None:
    assert m.to.uri.user == "null-\x00-null"
    assert m.from_.uri.user == "null-\x00-null"
    assert [c.uri.user for c in m.contacts] == ["\x00", "\x00\x00"]
    assert m.body == b""


def check_esc02(m: Request) -> None:
    assert m.method == "RE%47IST%45R" and m.cseq.method == "RE%47IST%45R"
    assert m.to.display_name == "%Z%45"
    assert m.via.branch == "z9hG4bK209%fzsnel234"
    assert [c.uri.user for c in m.contacts] == ["alias1", "alias3"]
    assert m.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"


def check_lwsdisp(m: Request) -> None:
    assert m.from_.display_name == "caller" and m.from_.tag == "323"
    assert m.from_.uri.user == "caller"


def check_longreq(m: Request) -> None:
    assert m.to.display_name == f"I have a user name of {'extreme' * 10} proportion"
    assert m.to.uri.port == 6000
    assert m.to.uri.params[f"very{'long' * 25}parameternamewithnovalue"] is None
    assert m.from_.tag == "12" + "982" * 45 + "424"
    assert m.call_id == f"longreq.one{'really' * 20}longcallid"
    vias = m.vias
    assert len(vias) == 34
    assert [v.host for v in vias[:33]] == [f"sip{n}.example.com" for n in range(33, 0, -1)]
    assert vias[-1].received == "192.0.2.5" and vias[-1].branch == f"very{'long' * 50}branchvalue"
    assert len(m.body) == 150


def check_dblreq(m: Request) -> None:
    assert m.method == "REGISTER"
    assert m.call_id == "dblreq.0ha0isndaksdj99sdfafnl3lk233412"
    assert m.body == b""  # the second request in the datagram is ignored


def check_semiuri(m: Request) -> None:
    assert m.uri.user == "user;par=u@example.net" and m.uri.host == "example.com"
    assert m.uri.params == {}
    assert m.headers.get_all("Accept") == [
        "application/sdp", "application/pkcs7-mime", "multipart/mixed", "multipart/signed",
        "message/sip", "message/sipfrag",
    ]


def check_transports(m: Request) -> None:
    assert [v.transport for v in m.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    assert m.call_id == "transports.kijh4akdnaqjkwendsasfdj"


def check_mpart01(m: Request) -> None:
    assert m.method == "MESSAGE"
    assert m.content_type == "multipart/mixed;boundary=7a9cbec02ceef655"
    assert len(m.body) == 553 and m.body.startswith(b"--7a9cbec02ceef655\r\n")
    assert m.body.endswith(b"--7a9cbec02ceef655--\r\n")
    assert m.via.has_rport and m.via.branch == "z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-"


def check_unreason(m: Response) -> None:
    assert m.status == 200
    assert m.reason == "= 2**3 * 5**2 но сто девяносто девять - простое"
    assert len(m.body) == 154


def check_noreason(m: Response) -> None:
    assert (m.status, m.reason) == (100, "")
    assert m.to.tag == "902jndnke3"


def check_badbranch(m: Request) -> None:
    # the transaction layer decides what to do with a bare magic cookie; the parser keeps it
    assert m.via.branch == "z9hG4bK"


def check_baddate(m: Request) -> None:
    assert m.headers.get("Date") == "Fri, 01 Jan 2010 16:00:00 EST"  # not interpreted


def check_badaspec(m: Request) -> None:
    # RFC 4475 3.1.2.14 allows being liberal about the spaces inside <>
    assert m.to.display_name == "Watson, Thomas" and m.to.uri.host == "example.org"
    assert m.from_.display_name == "Bell, Alexander"


def check_bext01(m: Request) -> None:
    assert m.headers.get_all("Require") == ["nothingSupportsThis", "nothingSupportsThisEither"]
    assert m.headers.get_all("Proxy-Require") == ["noProxiesSupportThis", "norDoAnyProxiesSupportThis"]
    assert m.via.transport == "TLS"


def check_invut(m: Request) -> None:
    assert m.content_type == "application/unknownformat"
    assert m.body == b'<audio>\r\n <pcmu port="443"/>\r\n</audio>\r\n'


def check_regaut01(m: Request) -> None:
    assert m.headers.get("Authorization") == "NoOneKnowsThisScheme opaque-data=here"
    assert m.headers.get_all("Authorization") == ["NoOneKnowsThisScheme opaque-data=here"]


def check_bcast(m: Response) -> None:
    assert [v.host for v in m.vias] == ["192.0.2.198", "255.255.255.255"]
    assert m.status == 200


def check_zeromf(m: Request) -> None:
    assert m.max_forwards == 0


def check_cparam01(m: Request) -> None:
    (contact,) = m.contacts
    assert contact.uri.user == "+19725552222" and contact.uri.params == {}
    assert contact.params == {"unknownparam": None}


def check_cparam02(m: Request) -> None:
    (contact,) = m.contacts
    assert contact.uri.params == {"unknownparam": None} and contact.params == {}


def check_regescrt(m: Request) -> None:
    (contact,) = m.contacts
    assert contact.uri.headers == {"Route": "<sip:sip.example.com>"}
    assert m.headers.get("Contact") == "<sip:user@example.com?Route=%3Csip:sip.example.com%3E>"


def check_sdp01(m: Request) -> None:
    assert m.headers.get("Accept") == "text/nobodyKnowsThis"
    assert SessionDescription.parse(m.body).media[0].formats == ["0", "12"]


def check_inv2543(m: Request) -> None:
    assert m.via.branch is None and m.via.host == "iftgw.example.com"
    assert m.max_forwards is None
    assert m.to.params == {"user": "phone"} and m.to.uri.params == {}  # addr-spec: header params
    assert m.body.startswith(b"v=0\r\n") and len(m.body) == 105  # no Content-Length: rest of datagram


def check_ipv6_good(m: Request) -> None:
    assert m.uri.host == "[2001:db8::10]" and m.uri.port is None
    assert m.via.sent_by == ("[2001:db8::9:1]", None)
    assert m.contacts[0].uri.host == "[2001:db8::1]"


def check_port_ambiguous(m: Request) -> None:
    assert m.uri.host == "[2001:db8::10:5070]" and m.uri.port is None


def check_port_unambiguous(m: Request) -> None:
    assert m.uri.host == "[2001:db8::10]" and m.uri.port == 5070


def check_received_delim(m: Request) -> None:
    assert m.via.received == "[2001:db8::9:255]"


def check_received_no_delim(m: Request) -> None:
    assert m.via.received == "2001:db8::9:255"


def check_ipv6_in_sdp(m: Request) -> None:
    sdp = SessionDescription.parse(m.body)
    assert sdp.connection == "IN IP6 2001:db8::20"
    assert [(x.kind, x.port) for x in sdp.media] == [("audio", 6000), ("video", 6024)]


def check_mult_ip_in_header(m: Request) -> None:
    assert [v.sent_by for v in m.vias] == [
        ("[2001:db8::9:1]", 6050), ("192.0.2.1", None), ("[2001:db8::9:255]", None)
    ]
    assert m.vias[2].received == "192.0.2.200"


def check_mult_ip_in_sdp(m: Request) -> None:
    sdp = SessionDescription.parse(m.body)
    assert [x.connection for x in sdp.media] == ["IN IP4 192.0.2.1", "IN IP6 2001:db8::1"]


def check_ipv4_mapped(m: Request) -> None:
    assert m.via.sent_by == ("[::ffff:192.0.2.10]", 19823)
    assert m.contacts[0].uri.host == "[::ffff:192.0.2.2]"


def check_3_colons(m: Request) -> None:
    # tolerated (RFC 5118 4.10) and normalised to the correct two-colon form
    assert m.uri.host == "[2001:db8::192.0.2.1]" and m.to.uri.host == "[2001:db8::192.0.2.1]"


def check_2_colons(m: Request) -> None:
    assert m.uri.host == "[2001:db8::192.0.2.1]"


# --- the table -------------------------------------------------------------------------------

Check = Callable[..., None] | None
CASES: list[tuple[str, str, str, Check]] = [
    # RFC 4475 3.1.1: valid messages
    ("4475-3.1.1.1", "wsinv", "valid", check_wsinv),
    ("4475-3.1.1.2", "intmeth", "valid", check_intmeth),
    ("4475-3.1.1.3", "esc01", "valid", check_esc01),
    ("4475-3.1.1.4", "escnull", "valid", check_escnull),
    ("4475-3.1.1.5", "esc02", "valid", check_esc02),
    ("4475-3.1.1.6", "lwsdisp", "valid", check_lwsdisp),
    ("4475-3.1.1.7", "longreq", "valid", check_longreq),
    ("4475-3.1.1.8", "dblreq", "valid", check_dblreq),
    ("4475-3.1.1.9", "semiuri", "valid", check_semiuri),
    ("4475-3.1.1.10", "transports", "valid", check_transports),
    ("4475-3.1.1.11", "mpart01", "valid", check_mpart01),
    ("4475-3.1.1.12", "unreason", "valid", check_unreason),
    ("4475-3.1.1.13", "noreason", "valid", check_noreason),
    # RFC 4475 3.1.2: invalid messages
    ("4475-3.1.2.1", "badinv01", "parse_ok_reject_400", None),
    ("4475-3.1.2.2", "clerr", "parse_error_400", None),
    ("4475-3.1.2.3", "ncl", "parse_error_400", None),
    ("4475-3.1.2.4", "scalar02", "parse_ok_reject_400", None),
    ("4475-3.1.2.5", "scalarlg", "parse_ok_reject_drop", None),
    ("4475-3.1.2.6", "quotbal", "parse_ok_reject_400", None),
    ("4475-3.1.2.7", "ltgtruri", "parse_error_400", None),
    ("4475-3.1.2.8", "lwsruri", "parse_error_400", None),
    ("4475-3.1.2.9", "lwsstart", "parse_error_400", None),
    ("4475-3.1.2.10", "trws", "parse_error_400", None),
    ("4475-3.1.2.11", "escruri", "parse_ok_reject_400", None),
    ("4475-3.1.2.12", "baddate", "valid", check_baddate),
    ("4475-3.1.2.13", "regbadct", "parse_ok_reject_400", None),
    ("4475-3.1.2.14", "badaspec", "valid", check_badaspec),
    ("4475-3.1.2.15", "baddn", "parse_ok_reject_400", None),
    ("4475-3.1.2.16", "badvers", "parse_error_505", None),
    ("4475-3.1.2.17", "mismatch01", "parse_ok_reject_400", None),
    ("4475-3.1.2.18", "mismatch02", "parse_ok_reject_400", None),
    ("4475-3.1.2.19", "bigcode", "parse_error_drop", None),
    # RFC 4475 3.2: transaction layer
    ("4475-3.2.1", "badbranch", "valid", check_badbranch),
    # RFC 4475 3.3: application layer
    ("4475-3.3.1", "insuf", "parse_ok_reject_drop", None),
    ("4475-3.3.2", "unkscm", "parse_ok_416", None),
    ("4475-3.3.3", "novelsc", "parse_ok_416", None),
    ("4475-3.3.4", "unksm2", "parse_ok_reject_400", None),
    ("4475-3.3.5", "bext01", "valid", check_bext01),
    ("4475-3.3.6", "invut", "valid", check_invut),
    ("4475-3.3.7", "regaut01", "valid", check_regaut01),
    ("4475-3.3.8", "multi01", "parse_ok_reject_400", None),
    ("4475-3.3.9", "mcl01", "parse_error_400", None),
    ("4475-3.3.10", "bcast", "valid", check_bcast),
    ("4475-3.3.11", "zeromf", "valid", check_zeromf),
    ("4475-3.3.12", "cparam01", "valid", check_cparam01),
    ("4475-3.3.13", "cparam02", "valid", check_cparam02),
    ("4475-3.3.14", "regescrt", "valid", check_regescrt),
    ("4475-3.3.15", "sdp01", "valid", check_sdp01),
    # RFC 4475 3.4: backward compatibility
    ("4475-3.4.1", "inv2543", "valid", check_inv2543),
    # RFC 5118 section 4
    ("5118-4.1", "ipv6-good", "valid", check_ipv6_good),
    ("5118-4.2", "ipv6-bad", "parse_ok_reject_400", None),
    ("5118-4.3", "port-ambiguous", "valid", check_port_ambiguous),
    ("5118-4.4", "port-unambiguous", "valid", check_port_unambiguous),
    ("5118-4.5a", "via-received-param-with-delim", "valid", check_received_delim),
    ("5118-4.5b", "via-received-param-no-delim", "valid", check_received_no_delim),
    ("5118-4.6", "ipv6-in-sdp", "valid", check_ipv6_in_sdp),
    ("5118-4.7", "mult-ip-in-header", "valid", check_mult_ip_in_header),
    ("5118-4.8", "mult-ip-in-sdp", "valid", check_mult_ip_in_sdp),
    ("5118-4.9", "ipv4-mapped-ipv6", "valid", check_ipv4_mapped),
    ("5118-4.10a", "ipv6-bug-abnf-3-colons", "valid", check_3_colons),
    ("5118-4.10b", "ipv6-correct-abnf-2-colons", "valid", check_2_colons),
]


@pytest.mark.parametrize(
    ("name", "outcome", "check"),
    [pytest.param(name, outcome, check, id=f"{sec}-{name}-{outcome}") for sec, name, outcome, check in CASES],
)
def test_torture_message(name: str, outcome: str, check: Check) -> None:
    data = load(name)
    if outcome.startswith("parse_error"):
        with pytest.raises(SipParseError) as info:
            parse_message(data)
        response = try_error_response(data, info.value)
        if outcome == "parse_error_drop":
            assert response is None
        else:
            assert response is not None
            assert response.status == (505 if outcome == "parse_error_505" else 400)
            assert isinstance(info.value, UnsupportedVersion) == (outcome == "parse_error_505")
            _check_error_response(response, data)
        return

    msg = parse_message(data)
    if outcome == "valid":
        validate_message(msg)
        assert check is not None
        check(msg)
        again = parse_message(msg.to_bytes())
        def fields(m: Request | Response) -> list[tuple[str, str]]:
            return [(n, v) for n, v in m.headers if n != "Content-Length"]

        assert fields(again) == fields(msg)
        assert again.headers.get("Content-Length") == str(len(msg.body))
        assert again.body == msg.body
        validate_message(again)
        check(again)
    elif outcome == "parse_ok_416":
        assert isinstance(msg, Request)
        with pytest.raises(UnsupportedUriScheme):
            msg.uri  # noqa: B018
        with pytest.raises(UnsupportedUriScheme) as info:
            validate_message(msg)
        response = try_error_response(data, info.value)
        assert response is not None and (response.status, response.reason) == (416, "Unsupported URI Scheme")
    else:
        with pytest.raises(SipParseError) as info:
            validate_message(msg)
        response = try_error_response(data, info.value)
        if outcome == "parse_ok_reject_drop":
            assert response is None
        else:
            assert response is not None and response.status == 400
            _check_error_response(response, data)


def _check_error_response(response: Response, data: bytes) -> None:
    assert response.reason.startswith("Bad Request - ") or response.status == 505
    wire = response.to_bytes()
    again = parse_message(wire)
    assert isinstance(again, Response) and again.status == response.status
    assert again.headers.get("Call-ID") is not None and again.headers.get("CSeq") is not None
    assert "tag=" in again.headers.get("To", "")


def test_every_torture_file_has_a_case() -> None:
    files = {p.stem for p in TORTURE.glob("*.sip")}
    assert files == {name for _, name, _, _ in CASES}


def test_specific_error_reasons() -> None:
    def reason(name: str) -> str:
        data = load(name)
        try:
            validate_message(parse_message(data))
        except SipParseError as exc:
            response = try_error_response(data, exc)
            assert response is not None
            return response.reason
        raise AssertionError("no error")

    assert "Via" in reason("badinv01")
    assert "Content-Length" in reason("clerr")
    assert "CSeq" in reason("mismatch01")
    assert "multiple From" in reason("multi01")
    assert "To" in reason("quotbal")
