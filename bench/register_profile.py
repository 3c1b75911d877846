"""REGISTER+digest through our SIP service in process, without sockets: where the CPU goes.

    .venv/bin/python bench/register_profile.py                  # CPU µs per registration, by step
    .venv/bin/python bench/register_profile.py --profile 40     # and cProfile's top 40 functions
    .venv/bin/python bench/register_profile.py --instructions   # instructions per registration (valgrind)

A real node (`SipNode`: its store in a temporary folder, accounts u1000... with password
`pw` + user, MD5 challenges as in bench/register.py) is fed the datagrams SIPp sends, straight
into `SipService.handle` from an asyncio loop, in batches: a batch of first REGISTERs (each
answered 401), then the same registrations with their digest answers (each answered 200 after
the group commit that holds its binding). The client side (building requests, computing digest
answers) is not counted. Each registration has a fresh Call-ID; the accounts register in turn,
so after the first round every registration refreshes one binding, as in bench/register.py.

This is not the benchmark (that is bench/register.py, against Kamailio, over UDP): it leaves
out the kernel and the event loop's socket work, and it reports no ratio. It is the tool for
deciding whether a change to the hot path helps. Timings move with whatever else the machine
runs; `--instructions` counts the instructions the process executes instead (valgrind's
cachegrind, two runs of different lengths, the difference divided by the registrations
between them), which moves by under 1 % from run to run however busy the machine is.
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
for _path in (str(REPO_ROOT), str(REPO_ROOT / "bench")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import inprocess  # noqa: E402

from sipsync.server.config import ServiceConfig  # noqa: E402
from sipsync.server.node import SipNode  # noqa: E402
from sipsync.server.provision import document_for_password, load_documents  # noqa: E402

REALM = "127.0.0.1"
SOURCE = ("127.0.0.1", 5061)
_NONCE = re.compile(rb'nonce="([^"]+)"')


class CollectingEndpoint:
    """Stands in for the UDP socket: keeps what the node sends."""

    name = "UDP"
    reliable = False

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, data: bytes, address: tuple[str, int]) -> None:
        self.sent.append(data)


def register_request(user: str, number: int, cseq: int, authorization: str | None = None) -> bytes:
    """A REGISTER as bench/register-digest.xml makes SIPp send it."""
    lines = [
        f"REGISTER sip:{REALM} SIP/2.0",
        f"Via: SIP/2.0/UDP {SOURCE[0]}:{SOURCE[1]};branch=z9hG4bK-4242-{number}-{cseq};rport",
        "Max-Forwards: 70",
        f'From: "{user}" <sip:{user}@{REALM}>;tag=4242b{number}',
        f"To: <sip:{user}@{REALM}>",
        f"Call-ID: {number}-4242@{SOURCE[0]}",
        f"CSeq: {cseq} REGISTER",
        f"Contact: <sip:{user}@{SOURCE[0]}:{SOURCE[1]};transport=UDP>",
    ]
    if authorization is not None:
        lines.append(authorization)
    lines += ["Expires: 3600", "User-Agent: ninja-bench-sipp", "Content-Length: 0", "", ""]
    return "\r\n".join(lines).encode()


def authorization(user: str, challenge: bytes) -> str:
    match = _NONCE.search(challenge)
    if match is None:
        raise RuntimeError(f"no nonce in the challenge: {challenge[:300]!r}")
    nonce = match.group(1).decode()

    def md5(text: str) -> str:
        return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()

    ha1, ha2 = md5(f"{user}:{REALM}:pw{user}"), md5(f"REGISTER:sip:{REALM}")
    response = md5(f"{ha1}:{nonce}:00000001:6b8b4567:auth:{ha2}")
    return (
        f'Authorization: Digest username="{user}",realm="{REALM}",cnonce="6b8b4567",nc=00000001,'
        f'qop=auth,uri="sip:{REALM}",nonce="{nonce}",response="{response}",algorithm=MD5'
    )


class Driver:
    def __init__(self, users: int, workdir: Path) -> None:
        self.users = [f"u{1000 + i}" for i in range(users)]
        store = workdir / "sip-store.sqlite3"
        load_documents(
            str(store),
            (document_for_password(u, REALM, "pw" + u, version=1, max_contacts=5) for u in self.users),
        )
        self.node = SipNode(ServiceConfig(realm=REALM, store_path=str(store), digest_algorithms=("MD5",)))
        self.endpoint = CollectingEndpoint()
        self.next_number = 0
        # CPU seconds: first REGISTERs handled, authenticated REGISTERs handled, commit + 200s
        self.steps = [0.0, 0.0, 0.0]
        self.done = 0

    async def run(self, count: int, batch: int) -> None:
        handle, endpoint, clock = self.node.service.handle, self.endpoint, time.process_time
        steps = self.steps
        for _ in range(0, count, batch):
            numbers = range(self.next_number, self.next_number + batch)
            self.next_number += batch
            users = [self.users[n % len(self.users)] for n in numbers]
            firsts = [register_request(u, n, 7) for u, n in zip(users, numbers, strict=True)]
            started = clock()
            for data in firsts:
                handle(data, SOURCE, endpoint)
            await asyncio.sleep(0)  # nothing to commit: the 401s went out at once
            steps[0] += clock() - started
            challenges, endpoint.sent = endpoint.sent, []
            seconds = []
            for user, number, challenge in zip(users, numbers, challenges, strict=True):
                if not challenge.startswith(b"SIP/2.0 401 "):
                    raise RuntimeError(f"expected a 401, got {challenge[:200]!r}")
                seconds.append(register_request(user, number, 8, authorization(user, challenge)))
            started = clock()
            for data in seconds:
                handle(data, SOURCE, endpoint)
            handled = clock()
            steps[1] += handled - started
            await asyncio.sleep(0)  # the group commit, then the 200s
            steps[2] += clock() - handled
            answers, endpoint.sent = endpoint.sent, []
            for answer in answers:
                if not answer.startswith(b"SIP/2.0 200 "):
                    raise RuntimeError(f"expected a 200, got {answer[:300]!r}")
            if len(answers) != batch:
                raise RuntimeError(f"{len(answers)} answers to {batch} registrations")
        self.done += count


def measure(args: argparse.Namespace) -> dict[str, float]:
    workdir = Path(tempfile.mkdtemp(prefix="register-profile-"))
    try:
        driver = Driver(args.users, workdir)

        def reset() -> None:
            driver.steps = [0.0, 0.0, 0.0]

        # the warm-up binds every account once and warms the caches
        inprocess.warm_then_measure(driver.run, args, reset)
        driver.node.store.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    per = [step / args.count * 1e6 for step in driver.steps]
    return {"challenge": per[0], "authenticated": per[1], "commit_and_200": per[2], "total": sum(per)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    inprocess.add_options(
        parser, "registrations", count=20000, warmup=2000, batch="registrations per loop turn"
    )
    args = inprocess.parse(parser, argv)
    if args.instructions:
        count = inprocess.instructions_per_unit(Path(__file__), args, [], REPO_ROOT)
        print(f"{count:,} instructions per "
              f"registration ({args.users:,} users, {args.count:,} vs {2 * args.count:,} registrations, "
              f"{'default' if args.no_gc_tuning else 'tuned'} GC)")  # fmt: skip
        return 0
    figures = measure(args)
    if not args.quiet:
        print(
            f"CPU per registration, in process: {figures['total']:.1f} µs "
            f"(first REGISTER and its 401: {figures['challenge']:.1f}; authenticated REGISTER: "
            f"{figures['authenticated']:.1f}; group commit and the 200: {figures['commit_and_200']:.1f}) "
            f"over {args.count:,} registrations, {args.users:,} users, pid {os.getpid()}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
