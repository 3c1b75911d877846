"""Authenticated calls through our SIP service in process, without sockets: where the CPU goes.

    .venv/bin/python bench/call_profile.py                  # CPU µs per call, by step
    .venv/bin/python bench/call_profile.py --profile 40     # and cProfile's top 40 functions
    .venv/bin/python bench/call_profile.py --instructions   # instructions per call (valgrind)

A real node (`SipNode`: its store in a temporary folder, provisioned as bench/calls.py provisions
it: accounts u1000... with password `pw` + user, a customer whose balance does not run out, a
rate plan for +27, the trunk at 127.0.0.1:5091) is fed, straight into `SipService.handle` from an
asyncio loop, the datagrams of the call bench/calls.py makes SIPp place: INVITE, 407, ACK,
INVITE with a digest answer, 100; the relayed INVITE answered 180 and 200 by the trunk; ACK and
BYE along the Record-Route, relayed to the trunk, whose 200 for the BYE is relayed back. Calls go
in batches, one step of every call of a batch per loop turn. The store's group commit, which the
node's housekeeping runs every 0.5 s, runs here after every --commit-every calls' worth of
messages (default 500: half a second at the rates bench/calls.py reaches), wherever in a batch
that falls, so about as many calls are in progress at a commit (and have their state written)
as under load.

Like bench/register_profile.py this is not the benchmark (bench/calls.py is, against Kamailio,
over UDP): it leaves out the kernel and the loop's socket work and reports no ratio. It is the
tool for judging a change to the call path. The client side (the callers and the trunk: building
their messages from what the node sent) is timed apart and left out of the CPU figures; under
`--instructions` it is counted too, but it is small and does not change with the service's code,
so the count still compares one build of the service against another.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO_ROOT / "bench"
for _path in (str(REPO_ROOT), str(BENCH_DIR)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import calls as bench_calls  # noqa: E402 - provisioning shared with the benchmark
import inprocess  # noqa: E402

from sipsync.server.config import ServiceConfig  # noqa: E402
from sipsync.server.node import SipNode  # noqa: E402

HOST = REALM = "127.0.0.1"
NODE = (HOST, 5073)
TRUNK = (HOST, 5091)
CALLER = (HOST, 5100)
DIALLED = bench_calls.DIALLED
_NONCE = re.compile(rb'nonce="([^"]+)"')
SDP = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 6000 RTP/AVP 0 18\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:18 G729/8000\r\n"
)
ANSWER_SDP = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 6002 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)
STEPS = ("challenge", "invite", "ringing_answer", "ack", "bye", "commit")
MESSAGES_PER_CALL = 8  # INVITE, ACK, INVITE, 180, 200, ACK, BYE, 200 (BYE)


class CollectingEndpoint:
    """Stands in for the node's UDP socket: keeps what it sends, by destination."""

    name = "UDP"
    reliable = False

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def send(self, data: bytes, address: tuple[str, int]) -> None:
        self.sent.append((data, address))

    def close(self) -> None:
        pass

    def take(self) -> tuple[list[bytes], list[bytes]]:
        """What went to the caller and what went to the trunk since the last take."""
        to_caller, to_trunk = [], []
        for data, address in self.sent:
            (to_trunk if address == TRUNK else to_caller).append(data)
        self.sent = []
        return to_caller, to_trunk


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def _headers(data: bytes) -> dict[str, list[str]]:
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    headers: dict[str, list[str]] = {}
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return headers


def _status(data: bytes) -> int:
    return int(data[8:11]) if data.startswith(b"SIP/2.0 ") else 0


class CallerSide:
    """One call as SIPp's bench/call-auth.xml places it."""

    def __init__(self, user: str, number: int) -> None:
        self.user, self.number = user, number
        self.call_id = f"{number}-call@{HOST}"
        self.from_ = f"<sip:{user}@{REALM}>;tag=c{number}"
        self.uri = f"sip:{DIALLED}@{REALM}"
        self.to = f"<sip:{DIALLED}@{REALM}>"
        self.remote_target = ""
        self.routes: list[str] = []

    def _request(
        self, method: str, uri: str, cseq: int, branch: str, extra: list[str], body: str = ""
    ) -> bytes:
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {CALLER[0]}:{CALLER[1]};branch=z9hG4bK-{self.number}-{branch};rport",
            *extra,
            f"From: {self.from_}",
            f"To: {self.to}",
            f"Call-ID: {self.call_id}",
            f"CSeq: {cseq} {method}",
            "Max-Forwards: 70",
        ]
        if body:
            lines += ["Content-Type: application/sdp", f"Content-Length: {len(body)}", "", body]
        else:
            lines += ["Content-Length: 0", "", ""]
        return "\r\n".join(lines).encode()

    def invite(self, authorization: str | None = None) -> bytes:
        extra = [f"Contact: <sip:{self.user}@{CALLER[0]}:{CALLER[1]}>", "User-Agent: sipp-bench"]
        if authorization is not None:
            extra.append(authorization)
        cseq, branch = (2, "2") if authorization else (1, "1")
        return self._request("INVITE", self.uri, cseq, branch, extra, SDP)

    def ack_challenge(self, challenge: bytes) -> bytes:
        self.to = _headers(challenge)["to"][0]
        ack = self._request("ACK", self.uri, 1, "1", [])
        self.to = f"<sip:{DIALLED}@{REALM}>"
        return ack

    def authorization(self, challenge: bytes) -> str:
        match = _NONCE.search(challenge)
        if match is None:
            raise RuntimeError(f"no nonce in the 407: {challenge[:300]!r}")
        nonce = match.group(1).decode()
        ha1 = _md5(f"{self.user}:{REALM}:pw{self.user}")
        ha2 = _md5(f"INVITE:{self.uri}")
        response = _md5(f"{ha1}:{nonce}:00000001:6b8b4567:auth:{ha2}")
        return (
            f'Proxy-Authorization: Digest username="{self.user}",realm="{REALM}",cnonce="6b8b4567",'
            f'nc=00000001,qop=auth,uri="{self.uri}",nonce="{nonce}",response="{response}",algorithm=MD5'
        )

    def answered(self, ok: bytes) -> None:
        headers = _headers(ok)
        self.to = headers["to"][0]
        self.remote_target = headers["contact"][0].strip("<>")
        self.routes = [r for value in headers.get("record-route", []) for r in value.split(",")]

    def in_dialog(self, method: str, cseq: int) -> bytes:
        routes = [f"Route: {route}" for route in self.routes]
        return self._request(method, self.remote_target, cseq, method.lower(), routes)


def trunk_response(request: bytes, status: str, tag: str, body: str = "") -> bytes:
    """The trunk's answer to a request the node relayed (as bench/call-uas.xml answers)."""
    headers = _headers(request)
    to = headers["to"][0]
    if ";tag=" not in to:
        to += f";tag={tag}"
    lines = [f"SIP/2.0 {status}"]
    lines += [f"Via: {via}" for via in headers["via"]]
    lines += [f"From: {headers['from'][0]}", f"To: {to}", f"Call-ID: {headers['call-id'][0]}",
              f"CSeq: {headers['cseq'][0]}"]  # fmt: skip
    lines += [f"Record-Route: {rr}" for rr in headers.get("record-route", [])]
    lines.append(f"Contact: <sip:{TRUNK[0]}:{TRUNK[1]};transport=UDP>")
    if body:
        lines += ["Content-Type: application/sdp", f"Content-Length: {len(body)}", "", body]
    else:
        lines += ["Content-Length: 0", "", ""]
    return "\r\n".join(lines).encode()


def _expect(messages: list[bytes], statuses: list[int], what: str) -> None:
    got = [_status(m) for m in messages]
    if got != statuses:
        first = messages[0][:300] if messages else b""
        raise RuntimeError(f"{what}: expected {statuses}, got {got[:12]}... first: {first!r}")


def _expect_relayed(messages: list[bytes], method: str, size: int) -> None:
    if len(messages) != size or not all(m.startswith(f"{method} ".encode()) for m in messages):
        raise RuntimeError(f"{len(messages)} {method}s relayed for {size} calls: {messages[:1]!r}")


class Driver:
    def __init__(self, users: int, workdir: Path, commit_every: int = 500) -> None:
        self.users = [f"u{1000 + i}" for i in range(users)]
        store = workdir / "sip-store.sqlite3"
        bench_calls.provision(store, self.users)
        config = ServiceConfig(
            realm=REALM, store_path=str(store), digest_algorithms=("MD5",), listen=(NODE,),
            trunk=f"sip:{TRUNK[0]}:{TRUNK[1]}",
        )  # fmt: skip
        self.node = SipNode(config)
        self.endpoint = CollectingEndpoint()
        self.node.transports.udp.append(self.endpoint)
        self.node.proxy.set_local(*NODE)
        self.next_number = 0
        self.commit_every = commit_every * MESSAGES_PER_CALL
        self.handled = 0
        self.steps = dict.fromkeys(STEPS, 0.0)  # CPU seconds of the node per step
        self.client = 0.0  # CPU seconds building the parties' messages

    async def _feed(self, step: str, messages: list[bytes], source: tuple[str, int]) -> None:
        handle, endpoint, clock = self.node.service.handle, self.endpoint, time.process_time
        started = clock()
        for data in messages:
            handle(data, source, endpoint)
            self.handled += 1
            # the housekeeping's group commit; half a period off, so it falls while a batch's calls
            # are in progress (on a multiple of the batch's messages, none would be)
            if self.handled % self.commit_every == self.commit_every // 2:
                committing = clock()
                self.node.service.flush()
                self.steps["commit"] += clock() - committing
                started += clock() - committing
        await asyncio.sleep(0)  # replies that wait for a commit, timers due
        self.steps[step] += clock() - started

    async def run(self, count: int, batch: int) -> None:
        for _ in range(0, count, batch):
            await self._batch(batch)

    async def _batch(self, size: int) -> None:
        clock, endpoint = time.process_time, self.endpoint
        numbers = range(self.next_number, self.next_number + size)
        self.next_number += size
        started = clock()
        parties = [CallerSide(self.users[n % len(self.users)], n) for n in numbers]
        invites = [p.invite() for p in parties]
        self.client += clock() - started

        await self._feed("challenge", invites, CALLER)
        started = clock()
        to_caller, _ = endpoint.take()
        challenges = [m for m in to_caller if _status(m) == 407]
        _expect(challenges, [407] * size, "first INVITEs")
        acks = [p.ack_challenge(c) for p, c in zip(parties, challenges, strict=True)]
        self.client += clock() - started
        await self._feed("challenge", acks, CALLER)

        started = clock()
        endpoint.take()
        invites = [p.invite(p.authorization(c)) for p, c in zip(parties, challenges, strict=True)]
        self.client += clock() - started
        await self._feed("invite", invites, CALLER)

        started = clock()
        to_caller, to_trunk = endpoint.take()
        _expect([m for m in to_caller if _status(m) != 100], [], "authenticated INVITEs")
        _expect_relayed(to_trunk, "INVITE", size)
        answers = []
        for number, relayed in zip(numbers, to_trunk, strict=True):
            answers.append(trunk_response(relayed, "180 Ringing", f"t{number}"))
            answers.append(trunk_response(relayed, "200 OK", f"t{number}", ANSWER_SDP))
        self.client += clock() - started
        await self._feed("ringing_answer", answers, TRUNK)

        started = clock()
        to_caller, _ = endpoint.take()
        _expect(to_caller, [180, 200] * size, "the trunk's 180 and 200")
        for party, ok in zip(parties, to_caller[1::2], strict=True):
            party.answered(ok)
        acks = [p.in_dialog("ACK", 2) for p in parties]
        self.client += clock() - started
        await self._feed("ack", acks, CALLER)

        started = clock()
        _, to_trunk = endpoint.take()
        _expect_relayed(to_trunk, "ACK", size)
        byes = [p.in_dialog("BYE", 3) for p in parties]
        self.client += clock() - started
        await self._feed("bye", byes, CALLER)

        started = clock()
        _, to_trunk = endpoint.take()
        _expect_relayed(to_trunk, "BYE", size)
        oks = [trunk_response(bye, "200 OK", "") for bye in to_trunk]
        self.client += clock() - started
        await self._feed("bye", oks, TRUNK)
        to_caller, _ = endpoint.take()
        _expect(to_caller, [200] * size, "the trunk's 200 for the BYEs")


def measure(args: argparse.Namespace) -> dict[str, float]:
    workdir = Path(tempfile.mkdtemp(prefix="call-profile-"))
    try:
        driver = Driver(args.users, workdir, args.commit_every)

        def reset() -> None:
            driver.steps = dict.fromkeys(STEPS, 0.0)
            driver.client = 0.0

        inprocess.warm_then_measure(driver.run, args, reset)
        if len(driver.node.calls):
            raise RuntimeError(f"{len(driver.node.calls)} calls still in progress after their BYE")
        driver.node.proxy.close()
        driver.node.service.flush()
        driver.node.store.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    figures = {step: seconds / args.count * 1e6 for step, seconds in driver.steps.items()}
    figures["total"] = sum(figures.values())
    figures["client"] = driver.client / args.count * 1e6
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    inprocess.add_options(parser, "calls", count=10000, warmup=1000, batch="calls per loop turn and step")
    parser.add_argument(
        "--commit-every", type=int, default=500, metavar="CALLS",
        help="a group commit after this many calls' worth of messages (default 500)",
    )  # fmt: skip
    args = inprocess.parse(parser, argv)
    if args.instructions:
        extra = ["--commit-every", str(args.commit_every)]
        count = inprocess.instructions_per_unit(Path(__file__), args, extra, REPO_ROOT)
        print(f"{count:,} instructions per call "
              f"({args.users:,} users, {args.count:,} vs {2 * args.count:,} calls, "
              f"{'default' if args.no_gc_tuning else 'tuned'} GC)")  # fmt: skip
        return 0
    figures = measure(args)
    if not args.quiet:
        steps = "; ".join(f"{step.replace('_', ' and ')}: {figures[step]:.1f}" for step in STEPS)
        print(
            f"CPU per call, in process: {figures['total']:.1f} µs ({steps}) over {args.count:,} calls, "
            f"{args.users:,} users; the parties' side, not counted: {figures['client']:.1f} µs; "
            f"pid {os.getpid()}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
