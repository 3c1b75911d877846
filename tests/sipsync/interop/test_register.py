"""The registrar driven as a real phone drives it: SIPp scenarios against `python -m sipsync.server`.

Each SIPp scenario expects exactly one response code at each step (and checks headers with ereg
actions), so SIPp exits 0 only when the service answered exactly that; a wrong code is an
"unexpected message" and a missing answer hits `-timeout_error`. A few checks need byte-level
control SIPp does not give (garbage datagrams, the exact header order of a 401) and use plain
sockets instead.
"""

import re
import secrets
import socket

import pytest

REALM = "sip.test"
ALICE = ("-au", "alice", "-ap", "Secret-Passw0rd")


def ok(result) -> None:
    """Assert SIPp's exit code 0 and show its error file and message trace if not."""
    returncode, log = result
    assert returncode == 0, f"SIPp exit code {returncode}\n{log}"


# --- challenge --------------------------------------------------------------------------------


@pytest.mark.sipp
def test_register_without_credentials_is_challenged(run_scenario, sha256_first_service):
    """401 with Digest challenges for the realm, qop="auth", SHA-256 before MD5 when so configured."""
    ok(run_scenario("challenge", sha256_first_service.port))


@pytest.mark.parametrize(
    "order", [("MD5",), ("MD5", "SHA-256"), ("SHA-256", "MD5")], ids=["default", "both", "sha256-first"]
)
def test_challenge_offers_the_configured_algorithms_in_order(service_factory, order):
    """The 401 read byte for byte: one WWW-Authenticate header per configured algorithm, in the
    configured order; MD5 alone by default (see ServiceConfig.digest_algorithms)."""
    arguments = () if order == ("MD5",) else ("--digest-algorithms", ",".join(order))
    service = service_factory(*arguments)
    response = udp_exchange(service.port, register_request(service.port))
    assert status_line(response).startswith("SIP/2.0 401 "), response
    challenges = header_values(response, "WWW-Authenticate")
    assert len(challenges) == len(order), response
    algorithms = [digest_param(c, "algorithm") for c in challenges]
    assert algorithms == list(order), response
    for challenge in challenges:
        assert challenge.startswith("Digest "), challenge
        assert digest_param(challenge, "realm") == REALM, challenge
        assert "auth" in [q.strip() for q in digest_param(challenge, "qop").split(",")], challenge
        assert digest_param(challenge, "nonce"), challenge


# --- successful registration ------------------------------------------------------------------


@pytest.mark.sipp
@pytest.mark.parametrize("domain", [REALM, "127.0.0.1"])
def test_register_udp(run_scenario, sip_service, domain):
    """Right password over UDP: 401, then 200 listing the Contact with expires=."""
    ok(run_scenario("register_ok", sip_service.port, keys={"domain": domain}, extra=ALICE))


@pytest.mark.sipp
def test_register_tcp(run_scenario, sip_service):
    """The same over TCP (one connection for the whole scenario)."""
    ok(run_scenario("register_ok", sip_service.port, transport="t1", extra=ALICE))


# --- refusals ---------------------------------------------------------------------------------


@pytest.mark.sipp
def test_wrong_password_is_forbidden_and_logged(run_scenario, sip_service, pick_port):
    local_port = pick_port()
    ok(
        run_scenario(
            "register_forbidden",
            sip_service.port,
            extra=("-au", "alice", "-ap", "not-the-password"),
            local_port=local_port,
        )
    )
    assert_auth_failure_logged(sip_service, local_port)


@pytest.mark.sipp
def test_unknown_user_is_forbidden_and_logged(run_scenario, sip_service, pick_port):
    local_port = pick_port()
    ok(
        run_scenario(
            "register_forbidden",
            sip_service.port,
            keys={"user": "mallory"},
            extra=("-au", "mallory", "-ap", "whatever"),
            local_port=local_port,
        )
    )
    assert_auth_failure_logged(sip_service, local_port)


@pytest.mark.sipp
def test_disabled_account_is_forbidden(run_scenario, sip_service):
    ok(
        run_scenario(
            "register_forbidden",
            sip_service.port,
            keys={"user": "carol"},
            extra=("-au", "carol", "-ap", "pw2"),
        )
    )


@pytest.mark.sipp
def test_password_change_required_is_forbidden_with_reason(run_scenario, sip_service):
    """Right password, but the account must change it first: 403 "Password change required"."""
    ok(
        run_scenario(
            "register_password_change",
            sip_service.port,
            keys={"user": "bob"},
            extra=("-au", "bob", "-ap", "pw"),
        )
    )


@pytest.mark.sipp
def test_interval_too_brief(run_scenario, sip_service):
    """Expires: 10 with --min-expires 60: 423 with Min-Expires: 60."""
    ok(run_scenario("register_too_brief", sip_service.port, extra=ALICE))


# --- unregistration ---------------------------------------------------------------------------


@pytest.mark.sipp
def test_unregister_one_contact(run_scenario, sip_service):
    """expires=0 on the registered Contact: 200 that no longer lists it."""
    ok(run_scenario("unregister_contact", sip_service.port, extra=ALICE))


@pytest.mark.sipp
def test_unregister_all_contacts(run_scenario, sip_service):
    """Contact: * with Expires: 0: 200 without any Contact."""
    ok(run_scenario("unregister_all", sip_service.port, extra=ALICE))


# --- other methods ----------------------------------------------------------------------------


@pytest.mark.sipp
def test_options_needs_no_credentials(run_scenario, sip_service):
    ok(run_scenario("options", sip_service.port))


@pytest.mark.sipp
def test_unknown_method_is_not_implemented(run_scenario, sip_service):
    ok(run_scenario("unknown_method", sip_service.port))


# --- durability -------------------------------------------------------------------------------


@pytest.mark.sipp
@pytest.mark.parametrize("kill", [True, False], ids=["sigkill", "sigterm"])
def test_binding_survives_restart(run_scenario, sip_service, kill):
    """A binding acknowledged with 200 is still there after the process is killed (or stopped)
    and started again on the same store: a REGISTER query (no Contact) lists it."""
    ok(run_scenario("register_ok", sip_service.port, keys={"line": "before-restart"}, extra=ALICE))
    if kill:
        sip_service.restart(kill=True)
    else:
        assert sip_service.stop() == 0, sip_service.stderr_text()  # SIGTERM: a clean exit
        sip_service.start()
    ok(run_scenario("register_query", sip_service.port, extra=ALICE))


# --- robustness -------------------------------------------------------------------------------

GARBAGE = [
    b"\x00\xff\xfe garbage \x80\x81",
    b"\r\n\r\n",  # a keep-alive: must be ignored too
    b"REGISTER sip:sip.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bK\r\n",  # truncated
    b"INVITE \xc3\x28 SIP/2.0\r\nContent-Length: 99999999999999999999\r\n\r\n",
    b"SIP/2.0 200 OK\r\n\r\n",  # a stray response without headers
    secrets.token_bytes(1400),
    b"A" * 60000,
]


def test_garbage_datagrams_do_not_kill_the_service(sip_service):
    """Raw garbage over UDP is dropped or answered, never fatal: OPTIONS still gets 200."""
    port = sip_service.port
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        for datagram in GARBAGE:
            sock.sendto(datagram, ("127.0.0.1", port))
    response = udp_exchange(port, options_request(port))
    assert status_line(response) == "SIP/2.0 200 OK", response
    assert sip_service.alive, sip_service.stderr_text()


# --- helpers ----------------------------------------------------------------------------------


def assert_auth_failure_logged(service, local_port: int) -> None:
    lines = [line for line in service.stderr_text().splitlines() if "auth-failed" in line]
    assert any(f"src=127.0.0.1:{local_port}" in line for line in lines), (
        f"no auth-failed line with src=127.0.0.1:{local_port}; auth-failed lines: {lines}"
    )


def _request(method: str, port: int, local_port: int, extra: str = "") -> bytes:
    tag = secrets.token_hex(4)
    return (
        f"{method} sip:{REALM} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};branch=z9hG4bK{secrets.token_hex(8)};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:alice@{REALM}>;tag={tag}\r\n"
        f"To: <sip:{'alice@' if method == 'REGISTER' else ''}{REALM}>\r\n"
        f"Call-ID: {secrets.token_hex(8)}@127.0.0.1\r\n"
        f"CSeq: 1 {method}\r\n"
        f"{extra}"
        "User-Agent: sipsync-interop (python)\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def options_request(port: int):
    return lambda local_port: _request("OPTIONS", port, local_port)


def register_request(port: int):
    return lambda local_port: _request(
        "REGISTER", port, local_port, f"Contact: <sip:alice@127.0.0.1:{local_port}>\r\nExpires: 3600\r\n"
    )


def udp_exchange(port: int, build, timeout: float = 5.0) -> str:
    """Send the request built for our local port; return the first response, as text."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(timeout)
        sock.sendto(build(sock.getsockname()[1]), ("127.0.0.1", port))
        try:
            data, _ = sock.recvfrom(65535)
        except TimeoutError:
            pytest.fail(f"no response from 127.0.0.1:{port} within {timeout}s")
    return data.decode("utf-8", "replace")


def status_line(response: str) -> str:
    return response.split("\r\n", 1)[0]


def header_values(response: str, name: str) -> list[str]:
    head = response.split("\r\n\r\n", 1)[0]
    values = []
    for line in head.split("\r\n")[1:]:
        field, sep, value = line.partition(":")
        if sep and field.strip().lower() == name.lower():
            values.append(value.strip())
    return values


def digest_param(challenge: str, name: str) -> str:
    match = re.search(rf'(?:^|[\s,]){name}=(?:"([^"]*)"|([^\s,]+))', challenge, re.IGNORECASE)
    assert match, f"no {name}= in {challenge!r}"
    return match.group(1) if match.group(1) is not None else match.group(2)
