"""NOTIFYs per second to 1,000 busy-lamp (BLF) subscribers, with the node's OPTIONS rate as reference.

    .venv/bin/python bench/notify.py                        # 10 watched extensions x 100 watchers
    .venv/bin/python bench/notify.py --duration 20 --inflight 4
    .venv/bin/python bench/notify.py --help

The node (`python -m sipsync.server` with its control interface) holds --watched extensions of one
customer and --watchers subscriber accounts of the same customer; every subscriber account is a
phone (its own UDP socket) whose BLF keys watch every watched extension: 10 x 100 = 1,000
subscriptions (dialog package, each set up as a phone does: SUBSCRIBE, 407, SUBSCRIBE with an MD5
digest answer, 200, the initial NOTIFY answered 200).

The extensions are then kept busy: a pusher sends provisioning pushes over the control API that
toggle do-not-disturb (shown as busy on every lamp), --inflight pushes at a time, each one
making the node send one NOTIFY to each of the extension's watchers (dialog-info built per
subscription, a client transaction each, the 200 matched back). Every NOTIFY is answered 200 at
once by the phone bank. Measured over --duration seconds after --warmup: NOTIFYs received (first
transmissions; retransmissions are counted apart: they mean answers came late), pushes applied,
the node's CPU time per NOTIFY and its CPU share.

Reference, same run, same phone bank: the node's own OPTIONS rate, every phone keeping
--options-inflight OPTIONS in flight (answered statelessly by the core): what one request/answer
costs the node at the least. Printed: both rates, both CPU costs per message, and their ratios.

The node runs on --server-cpus (taskset), this script (phones and pusher) on --client-cpus.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(REPO_ROOT))

import register as reg  # noqa: E402 - the process and CPU helpers of bench/register.py

HOST = "127.0.0.1"
REALM = "sip.bench"
SECRET = "bench-control-secret-0123456789"
PASSWORD = "Bench-Passw0rd"
NONCE = re.compile(rb'nonce="([^"]+)"')


def say(text: str = "") -> None:
    print(text, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--watched", type=int, default=10, help="extensions watched (default 10)")
    parser.add_argument("--watchers", type=int, default=100, help="phones watching every one of them (100)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per phase (10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds left out first (2)")
    parser.add_argument("--inflight", type=int, default=2, help="provisioning pushes in flight (2)")
    parser.add_argument("--options-inflight", type=int, default=2, help="OPTIONS in flight per phone (2)")
    parser.add_argument("--port", type=int, default=5075)
    parser.add_argument("--control-port", type=int, default=5076)
    parser.add_argument("--server-cpus", default="0", help="taskset list for the node ('' for none)")
    parser.add_argument("--client-cpus", default="1", help="CPUs for this script ('' for none)")
    return parser.parse_args(argv)


# --- the node -------------------------------------------------------------------------------------


def document(user: str, extension: str, version: int = 1, *, dnd: bool = False) -> dict:
    from sipsync.server.provision import document_for_password

    return document_for_password(
        user, REALM, PASSWORD, version=version, extension=extension, customer="C0000001", dnd=dnd
    )


def start_node(
    args: argparse.Namespace, workdir: Path, watched: list[str], watchers: list[str]
) -> reg.Server:
    from sipsync.server.provision import load_documents

    store = workdir / "node.sqlite3"
    docs = [document(u, u[1:]) for u in watched] + [document(u, u[1:]) for u in watchers]
    load_documents(str(store), docs)
    os.environ["SIP_CONTROL_SECRET"] = SECRET
    argv = [sys.executable, "-m", "sipsync.server", "--listen", f"{HOST}:{args.port}",
            "--store", str(store), "--realm", REALM, "--log-level", "WARNING",
            "--control", f"{HOST}:{args.control_port}"]  # fmt: skip
    managed = reg.Managed("sipsync", reg.pin(args.server_cpus or None) + argv, log_path=workdir / "node.log",
                          cwd=REPO_ROOT)  # fmt: skip
    if reg.options_probe(args.port, 30.0) is None:
        managed.close()
        raise RuntimeError("the node did not answer OPTIONS:\n" + (workdir / "node.log").read_text()[-2000:])
    return reg.Server("sipsync", args.port, managed, managed.proc.pid)


# --- the phone bank ----------------------------------------------------------------------------------


def _header(head: bytes, name: bytes) -> bytes:
    start = head.find(b"\r\n" + name)
    end = head.find(b"\r\n", start + 2)
    return head[start + 2 : end]


class Counters:
    def __init__(self) -> None:
        self.notifies = 0
        self.retransmitted = 0
        self.options = 0


class Phone(asyncio.DatagramProtocol):
    """One subscriber account on its own socket: subscribes, answers every NOTIFY 200."""

    def __init__(self, user: str, node: tuple[str, int], counters: Counters) -> None:
        self.user, self.node, self.counters = user, node, counters
        self.transport: asyncio.DatagramTransport | None = None
        self.waiting: dict[bytes, asyncio.Future[bytes]] = {}
        self.seen: set[bytes] = set()
        self.cseq = itertools.count(1)
        self.options_left = 0

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.transport = transport

    @property
    def port(self) -> int:
        assert self.transport is not None
        return self.transport.get_extra_info("sockname")[1]

    def datagram_received(self, data: bytes, addr) -> None:  # type: ignore[override]
        head = data[: data.find(b"\r\n\r\n") + 2]
        if data.startswith(b"NOTIFY "):
            key = _header(head, b"Call-ID:") + _header(head, b"CSeq:")
            if key in self.seen:
                self.counters.retransmitted += 1
            else:
                self.seen.add(key)
                self.counters.notifies += 1
            lines = [b"SIP/2.0 200 OK"]
            lines += [_header(head, n) for n in (b"Via:", b"From:", b"To:", b"Call-ID:", b"CSeq:")]
            assert self.transport is not None
            self.transport.sendto(b"\r\n".join([*lines, b"Content-Length: 0", b"", b""]), addr)
            return
        if not data.startswith(b"SIP/2.0 "):
            return
        if b" OPTIONS" in _header(head, b"CSeq:"):
            self.counters.options += 1
            if self.options_left > 0:
                self.send_options()
            return
        future = self.waiting.pop(_header(head, b"CSeq:"), None)
        if future is not None and not future.done():
            future.set_result(data)

    def request(self, method: str, target: str, cseq: int, call_id: str, extra: str = "") -> bytes:
        branch = os.urandom(6).hex()
        return (
            f"{method} sip:{target}@{REALM} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {HOST}:{self.port};branch=z9hG4bK{branch};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:{self.user}@{REALM}>;tag={call_id[:8]}\r\n"
            f"To: <sip:{target}@{REALM}>\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n"
            f"Contact: <sip:{self.user}@{HOST}:{self.port}>\r\n{extra}Content-Length: 0\r\n\r\n"
        ).encode()

    async def exchange(self, data: bytes, cseq_value: bytes) -> bytes:
        future = asyncio.get_running_loop().create_future()
        self.waiting[cseq_value] = future
        assert self.transport is not None
        for _ in range(6):  # our own retransmissions, in case a datagram is lost
            self.transport.sendto(data, self.node)
            try:
                return await asyncio.wait_for(asyncio.shield(future), 1.0)
            except TimeoutError:
                continue
        raise RuntimeError(f"{self.user}: no answer to {data.split(b' ', 1)[0].decode()}")

    async def subscribe(self, target: str) -> None:
        call_id = f"{os.urandom(8).hex()}@{self.user}"
        events = "Event: dialog\r\nAccept: application/dialog-info+xml\r\nExpires: 3600\r\n"
        cseq = next(self.cseq)
        challenge = await self.exchange(
            self.request("SUBSCRIBE", target, cseq, call_id, events), f"CSeq: {cseq} SUBSCRIBE".encode()
        )
        if not challenge.startswith(b"SIP/2.0 407"):
            raise RuntimeError(f"{self.user} -> {target}: {challenge.splitlines()[0].decode()}")
        nonce = NONCE.search(challenge).group(1).decode()  # type: ignore[union-attr]
        uri = f"sip:{target}@{REALM}"

        def h(text: str) -> str:
            return hashlib.md5(text.encode()).hexdigest()  # noqa: S324 - SIP digest is MD5

        ha1 = h(f"{self.user}:{REALM}:{PASSWORD}")
        digest = h(f"{ha1}:{nonce}:00000001:bench:auth:{h(f'SUBSCRIBE:{uri}')}")
        auth = (
            f'Proxy-Authorization: Digest username="{self.user}", realm="{REALM}", nonce="{nonce}", '
            f'uri="{uri}", response="{digest}", algorithm=MD5, qop=auth, nc=00000001, cnonce="bench"\r\n'
        )
        cseq = next(self.cseq)
        answer = await self.exchange(
            self.request("SUBSCRIBE", target, cseq, call_id, events + auth),
            f"CSeq: {cseq} SUBSCRIBE".encode(),
        )
        if not answer.startswith(b"SIP/2.0 200"):
            raise RuntimeError(f"{self.user} -> {target}: {answer.splitlines()[0].decode()}")

    def send_options(self) -> None:
        self.options_left -= 1
        assert self.transport is not None
        call_id = f"{os.urandom(6).hex()}@{self.user}"
        self.transport.sendto(self.request("OPTIONS", self.user, 1, call_id), self.node)


# --- the phases --------------------------------------------------------------------------------------


async def measure(
    node: reg.Server, args: argparse.Namespace, count, work
) -> tuple[float, float, float, float]:
    """Run ``work`` (a coroutine function taking a stop event); returns (messages/s, node CPU s per
    message, node CPU share, this script's CPU share) over the window after the warm-up."""
    stop = asyncio.Event()
    task = asyncio.create_task(work(stop))
    await asyncio.sleep(args.warmup)
    first, cpu0, own0, t0 = count(), node.cpu(), time.process_time(), time.monotonic()
    await asyncio.sleep(args.duration)
    done, cpu1, own1, t1 = count() - first, node.cpu(), time.process_time(), time.monotonic()
    stop.set()
    await task
    elapsed = t1 - t0
    return done / elapsed, (cpu1 - cpu0) / max(done, 1), (cpu1 - cpu0) / elapsed, (own1 - own0) / elapsed


async def run(args: argparse.Namespace, node: reg.Server, watched: list[str], watchers: list[str]) -> None:
    import aiohttp

    loop = asyncio.get_running_loop()
    counters = Counters()
    phones: list[Phone] = []
    for user in watchers:
        _, phone = await loop.create_datagram_endpoint(
            lambda u=user: Phone(u, (HOST, args.port), counters), local_addr=(HOST, 0)
        )
        phones.append(phone)
    started = time.monotonic()
    gate = asyncio.Semaphore(50)

    async def one(phone: Phone, target: str) -> None:
        async with gate:
            await phone.subscribe(target)

    await asyncio.gather(*(one(p, w[1:]) for p in phones for w in watched))
    subscriptions = len(phones) * len(watched)
    await asyncio.sleep(0.5)  # the last initial NOTIFYs (sent after their 200)
    say(f"{subscriptions} subscriptions set up in {time.monotonic() - started:.1f} s "
        f"({counters.notifies} initial NOTIFYs answered)")  # fmt: skip

    versions = dict.fromkeys(watched, 1)
    pushes = 0
    headers = {"Authorization": f"Bearer {SECRET}"}
    base = f"http://{HOST}:{args.control_port}/v1/accounts"

    async def push_loop(stop: asyncio.Event) -> None:
        nonlocal pushes
        cycle = itertools.cycle(watched)
        async with aiohttp.ClientSession(headers=headers) as session:

            async def pusher() -> None:
                nonlocal pushes
                while not stop.is_set():
                    user = next(cycle)
                    versions[user] += 1
                    body = document(user, user[1:], versions[user], dnd=versions[user] % 2 == 0)
                    async with session.put(f"{base}/{user}@{REALM}", data=json.dumps(body)) as response:
                        if response.status != 200:
                            raise RuntimeError(f"push {user}: {response.status} {await response.text()}")
                        pushes += 1

            await asyncio.gather(*(pusher() for _ in range(args.inflight)))

    retrans0 = counters.retransmitted
    notify = await measure(node, args, lambda: counters.notifies, push_loop)
    notify_rate, notify_cpu, notify_share, notify_own = notify
    await asyncio.sleep(1.0)  # the last NOTIFYs answered
    retransmitted = counters.retransmitted - retrans0
    say(f"NOTIFY: {notify_rate:,.0f}/s to {subscriptions} BLF subscribers ({len(watched)} extensions "
        f"x {len(phones)} watchers), {pushes} pushes; node CPU {notify_cpu * 1e6:,.0f} us per NOTIFY, "
        f"CPU share {notify_share:.0%}; retransmitted NOTIFYs {retransmitted}; "
        f"phones and pusher CPU share {notify_own:.0%}")  # fmt: skip

    async def options_loop(stop: asyncio.Event) -> None:
        for phone in phones:
            phone.options_left = 10**9
            for _ in range(args.options_inflight):
                phone.send_options()
        await stop.wait()
        for phone in phones:
            phone.options_left = 0

    options_rate, options_cpu, options_share, options_own = await measure(
        node, args, lambda: counters.options, options_loop
    )
    await asyncio.sleep(0.5)
    say(f"OPTIONS (reference): {options_rate:,.0f}/s from {len(phones)} phones "
        f"x {args.options_inflight} in flight; node CPU {options_cpu * 1e6:,.0f} us per OPTIONS, "
        f"CPU share {options_share:.0%}; phones CPU share {options_own:.0%}")  # fmt: skip
    say(f"ratio NOTIFY/OPTIONS: rate {notify_rate / options_rate:.2f}, node CPU per message "
        f"{notify_cpu / options_cpu:.2f}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.client_cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, reg.cpu_list(args.client_cpus))
    watched = [f"w{2000 + i}" for i in range(args.watched)]
    watchers = [f"p{3000 + i}" for i in range(args.watchers)]
    say(f"bench/notify.py {' '.join(argv if argv is not None else sys.argv[1:])} -- {reg.code_state()}")
    with tempfile.TemporaryDirectory(prefix="notify-bench-") as tmp:
        node = start_node(args, Path(tmp), watched, watchers)
        try:
            asyncio.run(run(args, node, watched, watchers))
        finally:
            node.managed.close()
            reg.Managed.close_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
