"""An in-process SIP node fed with bytes, and a tiny UA that builds requests and answers challenges."""

import hashlib
import itertools
import re

import pytest

from sipsync.server.config import ServiceConfig
from sipsync.server.node import SipNode
from sipsync.server.provision import document_for_password, load_documents
from sipsync.sip.message import Response
from sipsync.sip.parser import parse_message

REALM = "sip.test"
PHONE = ("198.51.100.7", 5062)


class CapturingEndpoint:
    name = "UDP"
    reliable = False

    def __init__(self):
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def send(self, data, address):
        self.sent.append((data, address))


class Phone:
    """Builds REGISTERs like a phone would and answers digest challenges."""

    _branches = itertools.count(1)

    def __init__(self, node, username, password, *, source=PHONE, transport="UDP"):
        self.node, self.username, self.password, self.source = node, username, password, source
        self.endpoint = CapturingEndpoint()
        self.endpoint.name = transport
        self.endpoint.reliable = transport != "UDP"
        self.call_id = f"{username}-{id(self)}@phone"
        self.cseq = 0

    def request(self, method="REGISTER", *, headers=(), contact=True, expires=None, cseq=None, to_user=None):
        if cseq is None:
            self.cseq += 1
            cseq = self.cseq
        host, port = self.source
        lines = [
            f"{method} sip:{REALM} SIP/2.0",
            f"Via: SIP/2.0/{self.endpoint.name} 10.0.0.2:{port};branch=z9hG4bK-{next(self._branches)};rport",
            f"From: <sip:{self.username}@{REALM}>;tag=ph{self.cseq}",
            f"To: <sip:{to_user or self.username}@{REALM}>",
            f"Call-ID: {self.call_id}",
            f"CSeq: {cseq} {method}",
            "Max-Forwards: 70",
            "User-Agent: TestPhone/1.0",
        ]
        if contact is True:
            lines.append(f"Contact: <sip:{self.username}@10.0.0.2:{port}>")
        elif contact:
            lines.append(f"Contact: {contact}")
        if expires is not None:
            lines.append(f"Expires: {expires}")
        lines.extend(f"{name}: {value}" for name, value in headers)
        return ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()

    def send(self, data) -> Response:
        self.endpoint.sent.clear()
        self.node.service.handle(data, self.source, self.endpoint)
        self.node.service.flush()
        assert len(self.endpoint.sent) == 1, self.endpoint.sent
        payload, address = self.endpoint.sent[0]
        assert address == self.source
        return parse_message(payload)

    def authorization(self, challenge: Response, *, password=None, method="REGISTER", algorithm="MD5", nc=1):
        value = next(
            v for v in challenge.headers.get_all("WWW-Authenticate") if f"algorithm={algorithm}" in v
        )
        nonce = re.search(r'nonce="([^"]+)"', value).group(1)
        digest = hashlib.md5 if algorithm == "MD5" else hashlib.sha256

        def h(text):
            return digest(text.encode()).hexdigest()

        ha1 = h(f"{self.username}:{REALM}:{password or self.password}")
        ha2 = h(f"{method}:sip:{REALM}")
        response = h(f"{ha1}:{nonce}:{nc:08x}:c0ffee:auth:{ha2}")
        return (
            f'Digest username="{self.username}", realm="{REALM}", nonce="{nonce}", uri="sip:{REALM}", '
            f'response="{response}", algorithm={algorithm}, qop=auth, nc={nc:08x}, cnonce="c0ffee"'
        )

    def register(self, *, password=None, algorithm="MD5", **kwargs) -> Response:
        challenge = self.send(self.request(**kwargs))
        assert challenge.status == 401, challenge
        kwargs.pop("cseq", None)
        auth = ("Authorization", self.authorization(challenge, password=password, algorithm=algorithm))
        return self.send(self.request(headers=[auth, *kwargs.pop("headers", ())], **kwargs))


@pytest.fixture
def make_node(tmp_path):
    nodes = []

    def make(accounts=(), **config):
        store = str(tmp_path / f"node{len(nodes)}.sqlite3")
        load_documents(store, accounts)
        node = SipNode(ServiceConfig(realm=REALM, store_path=store, **config))
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        if not node.store._closed:
            node.store.close()


@pytest.fixture
def node(make_node):
    return make_node(
        [
            document_for_password("alice", REALM, "Alice-Passw0rd", max_contacts=2),
            document_for_password("bob", REALM, "Bob-Passw0rd", password_change_required=True),
            document_for_password("carol", REALM, "Carol-Passw0rd", enabled=False),
        ]
    )
