"""Tests for sipsync.sip.digest (RFC 2617 / RFC 7616 / RFC 8760 digest)."""

from __future__ import annotations

import base64
import dataclasses
import hmac

import pytest

from sipsync.sip import digest
from sipsync.sip.digest import (
    ALGORITHMS,
    DigestCredentials,
    DigestError,
    NonceManager,
    NonceState,
    build_challenge,
    build_challenges,
    compute_ha1,
    expected_response,
    parse_credentials,
    verify_response,
)

# RFC 2617 section 3.5
RFC2617_AUTH = (
    'Digest username="Mufasa",\r\n'
    ' realm="testrealm@host.com",\r\n'
    ' nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",\r\n'
    ' uri="/dir/index.html",\r\n'
    ' qop=auth,\r\n'
    ' nc=00000001,\r\n'
    ' cnonce="0a4f113b",\r\n'
    ' response="6629fae49393a05397450978507c4ef1",\r\n'
    ' opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)

# RFC 7616 section 3.9.1
RFC7616_COMMON = (
    'username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", '
    'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", nc=00000001, '
    'cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth, '
    'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
)
RFC7616_SHA256 = (
    'Digest algorithm=SHA-256, ' + RFC7616_COMMON
    + ', response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"'
)
RFC7616_MD5 = 'Digest algorithm=MD5, ' + RFC7616_COMMON + ', response="8ca523f5e9506fed4657c9700eebdbec"'


def _creds(**overrides) -> DigestCredentials:
    return dataclasses.replace(parse_credentials(RFC2617_AUTH), **overrides)


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# ------------------------------------------------------------------ vectors


def test_rfc2617_example_vector():
    creds = parse_credentials(RFC2617_AUTH)
    assert creds.username == 'Mufasa'
    assert creds.realm == 'testrealm@host.com'
    assert creds.qop == 'auth'
    assert creds.nc == '00000001'
    assert creds.cnonce == '0a4f113b'
    assert creds.opaque == '5ccc069c403ebaf9f0171e9517f40e41'
    assert creds.algorithm == 'MD5'
    ha1 = compute_ha1('Mufasa', 'testrealm@host.com', 'Circle Of Life')
    assert expected_response(creds, 'GET', ha1) == '6629fae49393a05397450978507c4ef1'
    assert verify_response(creds, 'GET', ha1) is True


def test_rfc7616_sha256_vector():
    creds = parse_credentials(RFC7616_SHA256)
    assert creds.algorithm == 'SHA-256'
    ha1 = compute_ha1('Mufasa', 'http-auth@example.org', 'Circle of Life', 'SHA-256')
    assert len(ha1) == 64
    assert verify_response(creds, 'GET', ha1) is True
    assert expected_response(creds, 'GET', ha1) == (
        '753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1'
    )


def test_rfc7616_md5_vector():
    creds = parse_credentials(RFC7616_MD5)
    ha1 = compute_ha1('Mufasa', 'http-auth@example.org', 'Circle of Life', 'MD5')
    assert verify_response(creds, 'GET', ha1) is True


def test_wrong_password_fails():
    creds = parse_credentials(RFC2617_AUTH)
    ha1 = compute_ha1('Mufasa', 'testrealm@host.com', 'circle of life')
    assert verify_response(creds, 'GET', ha1) is False


def test_wrong_method_or_uri_fails():
    creds = parse_credentials(RFC2617_AUTH)
    ha1 = compute_ha1('Mufasa', 'testrealm@host.com', 'Circle Of Life')
    assert verify_response(creds, 'POST', ha1) is False
    assert verify_response(_creds(uri='/other'), 'GET', ha1) is False
    assert verify_response(_creds(nc='00000002'), 'GET', ha1) is False


def test_sha256_ha1_does_not_verify_md5_credentials():
    creds = parse_credentials(RFC7616_MD5)
    ha1 = compute_ha1('Mufasa', 'http-auth@example.org', 'Circle of Life', 'SHA-256')
    assert verify_response(creds, 'GET', ha1) is False


def test_rfc2069_no_qop_roundtrip():
    ha1 = compute_ha1('alice', 'pbx.example', 's3cret')
    inner = digest._md5(b'REGISTER:sip:pbx.example')
    response = digest._md5(f'{ha1}:abc:{inner}'.encode())
    value = (
        f'Digest username="alice", realm="pbx.example", nonce="abc", uri="sip:pbx.example", '
        f'response="{response}"'
    )
    creds = parse_credentials(value)
    assert creds.qop is None and creds.nc is None and creds.cnonce is None
    assert verify_response(creds, 'REGISTER', ha1) is True
    assert verify_response(creds, 'INVITE', ha1) is False


@pytest.mark.parametrize('algorithm', ['MD5-sess', 'SHA-256-sess'])
def test_sess_variants(algorithm):
    fn = digest._md5 if algorithm.startswith('MD5') else digest._sha256
    ha1 = compute_ha1('bob', 'r', 'pw', algorithm)
    assert ha1 == fn(b'bob:r:pw')
    session_key = fn(f'{ha1}:n1:c1'.encode())
    ha2 = fn(b'REGISTER:sip:r')
    response = fn(f'{session_key}:n1:00000001:c1:auth:{ha2}'.encode())
    creds = parse_credentials(
        f'Digest username="bob", realm="r", nonce="n1", uri="sip:r", algorithm={algorithm}, '
        f'qop=auth, nc=00000001, cnonce="c1", response="{response}"'
    )
    assert creds.algorithm == algorithm
    assert verify_response(creds, 'REGISTER', ha1) is True
    assert verify_response(creds, 'REGISTER', fn(b'bob:r:other')) is False


def test_auth_int_uses_body():
    ha1 = compute_ha1('bob', 'r', 'pw')
    body = b'v=0\r\n'
    ha2 = digest._md5(f'MESSAGE:sip:r:{digest._md5(body)}'.encode())
    response = digest._md5(f'{ha1}:n:00000001:c:auth-int:{ha2}'.encode())
    creds = parse_credentials(
        'Digest username="bob", realm="r", nonce="n", uri="sip:r", qop=auth-int, nc=00000001, '
        f'cnonce="c", response="{response}"'
    )
    assert verify_response(creds, 'MESSAGE', ha1, body) is True
    assert verify_response(creds, 'MESSAGE', ha1, b'tampered') is False


def test_verify_uses_compare_digest(monkeypatch):
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, 'compare_digest', spy)
    creds = parse_credentials(RFC2617_AUTH)
    ha1 = compute_ha1('Mufasa', 'testrealm@host.com', 'Circle Of Life')
    assert verify_response(creds, 'GET', ha1) is True
    assert calls == [('6629fae49393a05397450978507c4ef1', '6629fae49393a05397450978507c4ef1')]


def test_verify_non_ascii_response_is_false():
    ha1 = compute_ha1('Mufasa', 'testrealm@host.com', 'Circle Of Life')
    assert verify_response(_creds(response='ä' * 32), 'GET', ha1) is False


def test_verify_unknown_algorithm_is_false():
    ha1 = compute_ha1('Mufasa', 'testrealm@host.com', 'Circle Of Life')
    assert verify_response(_creds(algorithm='SHA-512-256'), 'GET', ha1) is False


def test_compute_ha1_unknown_algorithm():
    with pytest.raises(DigestError):
        compute_ha1('a', 'b', 'c', 'SHA-1')


def test_algorithms_constant():
    assert ALGORITHMS == ('MD5', 'SHA-256')
    for alg in ALGORITHMS:
        assert compute_ha1('a', 'b', 'c', alg)


# ------------------------------------------------------------------ parsing


def test_parse_quoted_commas_and_escapes():
    creds = parse_credentials(
        r'Digest username="a\"b\\c", realm="x, y = z", nonce="n,1", uri="sip:u@h;a=b,c", '
        r'response="00000000000000000000000000000000"'
    )
    assert creds.username == 'a"b\\c'
    assert creds.realm == 'x, y = z'
    assert creds.nonce == 'n,1'
    assert creds.uri == 'sip:u@h;a=b,c'


def test_parse_scheme_case_and_whitespace_and_empty_elements():
    creds = parse_credentials(
        '  dIgEsT   ,username = "u" ,, realm="r",nonce="n" , uri="sip:r",'
        'response="0123456789ABCDEF0123456789abcdef", ,'
    )
    assert creds.username == 'u'
    assert creds.response == '0123456789abcdef0123456789abcdef'


def test_parse_algorithm_and_qop_case_insensitive():
    creds = parse_credentials(
        'Digest username="u", realm="r", nonce="n", uri="sip:r", algorithm=sha-256, qop=AUTH, '
        'nc=0000000a, cnonce="c", response="' + '0' * 64 + '"'
    )
    assert creds.algorithm == 'SHA-256'
    assert creds.qop == 'auth'


def test_parse_ignores_unknown_params():
    creds = parse_credentials(
        'Digest username="u", realm="r", nonce="n", uri="sip:r", response="' + '0' * 32 + '", '
        'foo=bar, baz="q,ux"'
    )
    assert creds.username == 'u'


def test_parse_username_star():
    creds = parse_credentials(
        "Digest username*=UTF-8''J%C3%A4s%C3%B8n%20Doe, realm=\"r\", nonce=\"n\", uri=\"sip:r\", "
        'response="' + '0' * 32 + '"'
    )
    assert creds.username == 'Jäsøn Doe'


@pytest.mark.parametrize(
    'value',
    [
        '',
        'Digest',
        'Basic dXNlcjpwYXNz',
        'Bearer abc',
        'Digestusername="u"',
        'Digest username="u", realm="r", nonce="n", uri="sip:r"',  # no response
        'Digest realm="r", nonce="n", uri="sip:r", response="' + '0' * 32 + '"',  # no username
        'Digest username="u", nonce="n", uri="sip:r", response="' + '0' * 32 + '"',  # no realm
        'Digest username="u", realm="r", uri="sip:r", response="' + '0' * 32 + '"',  # no nonce
        'Digest username="u", realm="r", nonce="n", response="' + '0' * 32 + '"',  # no uri
        'Digest username="u, realm="r", nonce="n", uri="sip:r", response="' + '0' * 32,  # unbalanced
        'Digest username="u" realm="r", nonce="n", uri="sip:r", response="' + '0' * 32 + '"',  # no comma
        'Digest username="u", username="v", realm="r", nonce="n", uri="sip:r", response="' + '0' * 32 + '"',
        'Digest username="u", realm="r", nonce="n", uri="sip:r", response="xyz"',  # not hex
        'Digest username="u", realm="r", nonce="n", uri="sip:r", response="' + '0' * 64 + '"',  # md5 len
        'Digest username="u", realm="r", nonce="n", uri="sip:r", algorithm=SHA-1, response="'
        + '0' * 32 + '"',
        'Digest username="u", realm="r", nonce="n", uri="sip:r", algorithm=SHA-512-256, response="'
        + '0' * 64 + '"',
        'Digest username="u", realm="r", nonce="n", uri="sip:r", qop=auth, response="' + '0' * 32 + '"',
        'Digest username="u", realm="r", nonce="n", uri="sip:r", qop=auth, nc=1, cnonce="c", response="'
        + '0' * 32 + '"',
        'Digest username="u", realm="r", nonce="n", uri="sip:r", qop=bogus, nc=00000001, cnonce="c", '
        'response="' + '0' * 32 + '"',
        'Digest username="u", realm="r", nonce="n", uri="sip:r", algorithm=MD5-sess, response="'
        + '0' * 32 + '"',  # -sess without cnonce
        'Digest username="u", realm="r", nonce="n", uri="sip:r", userhash=true, response="'
        + '0' * 32 + '"',
        "Digest username*=latin1''x, realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"" + '0' * 32 + '"',
        'Digest =x, username="u"',
        'Digest username="u", realm="r", nonce="n", uri="sip:r", response="' + '0' * 32 + '", @@@',
    ],
)
def test_parse_rejects(value):
    with pytest.raises(DigestError):
        parse_credentials(value)


def test_digest_error_is_value_error():
    with pytest.raises(ValueError):
        parse_credentials('Basic abc')


# ------------------------------------------------------------------ challenges


def test_build_challenge_default():
    value = build_challenge('pbx.example', 'abc')
    assert value == 'Digest realm="pbx.example", qop="auth", nonce="abc", algorithm=MD5'


def test_build_challenge_options_and_quoting():
    value = build_challenge('a "quoted" \\ realm', 'n', algorithm='sha-256', stale=True, opaque='op')
    assert value == (
        'Digest realm="a \\"quoted\\" \\\\ realm", qop="auth", nonce="n", opaque="op", '
        'algorithm=SHA-256, stale=true'
    )
    assert 'qop' not in build_challenge('r', 'n', qop=None)
    with pytest.raises(DigestError):
        build_challenge('r', 'n', algorithm='SHA-1')


def test_build_challenges_sha256_first():
    values = build_challenges('r', 'n', stale=True)
    assert len(values) == 2
    assert values[0].endswith('algorithm=SHA-256, stale=true')
    assert values[1].endswith('algorithm=MD5, stale=true')


def test_challenge_response_roundtrip_both_algorithms():
    nonces = NonceManager(b'k' * 32)
    nonce = nonces.issue('pbx.example')
    for alg in ('SHA-256', 'MD5'):
        fn = digest._sha256 if alg == 'SHA-256' else digest._md5
        ha1 = compute_ha1('100', 'pbx.example', 'pw', alg)
        ha2 = fn(b'REGISTER:sip:pbx.example')
        response = fn(f'{ha1}:{nonce}:00000001:cn:auth:{ha2}'.encode())
        creds = parse_credentials(
            f'Digest username="100", realm="pbx.example", nonce="{nonce}", uri="sip:pbx.example", '
            f'algorithm={alg}, qop=auth, nc=00000001, cnonce="cn", response="{response}"'
        )
        assert nonces.check(creds.nonce, creds.realm) is NonceState.VALID
        assert verify_response(creds, 'REGISTER', ha1) is True


# ------------------------------------------------------------------ nonces


def test_nonce_valid_then_stale():
    clock = FakeClock()
    nonces = NonceManager(b'secret', ttl=300, clock=clock)
    nonce = nonces.issue('r')
    assert nonces.check(nonce, 'r') is NonceState.VALID
    clock.now += 299.9
    assert nonces.check(nonce, 'r') is NonceState.VALID
    clock.now += 0.2
    assert nonces.check(nonce, 'r') is NonceState.STALE


def test_nonce_from_the_future():
    clock = FakeClock()
    nonces = NonceManager(b'secret', clock=clock)
    nonce = nonces.issue('r')
    clock.now -= 1.0  # small skew is tolerated
    assert nonces.check(nonce, 'r') is NonceState.VALID
    clock.now -= 60.0
    assert nonces.check(nonce, 'r') is NonceState.STALE


def test_nonce_is_unique_and_quotable():
    nonces = NonceManager(b'secret')
    issued = {nonces.issue('r') for _ in range(50)}
    assert len(issued) == 50
    for nonce in issued:
        assert '"' not in nonce and '\\' not in nonce and ',' not in nonce


def test_nonce_wrong_realm_or_secret_is_invalid():
    clock = FakeClock()
    nonce = NonceManager(b'secret', clock=clock).issue('r')
    assert NonceManager(b'secret', clock=clock).check(nonce, 'other') is NonceState.INVALID
    assert NonceManager(b'other-secret', clock=clock).check(nonce, 'r') is NonceState.INVALID


def test_forged_nonce_is_invalid_even_when_expired():
    clock = FakeClock()
    nonces = NonceManager(b'secret', clock=clock)
    raw = bytearray(base64.urlsafe_b64decode(nonces.issue('r')))
    raw[-1] ^= 1  # tamper with the MAC
    forged = base64.urlsafe_b64encode(bytes(raw)).decode()
    assert nonces.check(forged, 'r') is NonceState.INVALID
    clock.now += 10_000
    assert nonces.check(forged, 'r') is NonceState.INVALID


def test_tampered_timestamp_is_invalid():
    clock = FakeClock()
    nonces = NonceManager(b'secret', clock=clock)
    raw = bytearray(base64.urlsafe_b64decode(nonces.issue('r')))
    raw[7] ^= 0xFF  # move the timestamp: the MAC no longer matches
    assert nonces.check(base64.urlsafe_b64encode(bytes(raw)).decode(), 'r') is NonceState.INVALID


@pytest.mark.parametrize(
    'garbage',
    ['', 'abc', 'dcd98b7102dd2f0e8b11d0f600bfb0c093', '!' * 44, 'é' * 44, 'A' * 43 + '=', 'A' * 44],
)
def test_garbled_nonce_is_invalid(garbage):
    assert NonceManager(b'secret').check(garbage, 'r') is NonceState.INVALID


def test_nonce_manager_rejects_bad_config():
    with pytest.raises(ValueError):
        NonceManager(b'')
    with pytest.raises(ValueError):
        NonceManager(b'k', ttl=0)
