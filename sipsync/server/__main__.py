"""Run a SIP service node:  python -m sipsync.server --listen 0.0.0.0:5060 --store var/sip.sqlite3"""

import argparse
import asyncio
import logging
import os
import signal
import sys

from sipsync.server.config import ServiceConfig
from sipsync.server.node import SipNode, tune_gc


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not host:port")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - listening everywhere is the operator's choice


def _trunk(text: str) -> str:
    from sipsync.sip.errors import SipParseError
    from sipsync.sip.uri import SipUri

    try:
        uri = SipUri.parse(text)
    except SipParseError as error:
        raise argparse.ArgumentTypeError(f"{text!r} is not a SIP URI: {error}") from None
    if uri.scheme != "sip" or not uri.host:
        raise argparse.ArgumentTypeError(f"{text!r} is not sip:HOST[:PORT]")
    return text


def _public(text: str | None) -> dict:
    if not text:
        return {}
    host, sep, port = text.rpartition(":")
    if sep and port.isdigit() and "]" not in port:
        return {"public_host": host, "public_port": int(port)}
    return {"public_host": text}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sipsync.server", description="SIP registrar/proxy node")
    parser.add_argument(
        "--listen", type=_address, action="append", help="host:port for UDP and TCP (repeatable)"
    )
    parser.add_argument("--store", required=True, help="path of the node's SQLite store")
    parser.add_argument("--realm", required=True, help="the SIP domain and digest realm")
    parser.add_argument("--node-id", default="local")
    parser.add_argument("--min-expires", type=int, default=60)
    parser.add_argument("--max-expires", type=int, default=3600)
    parser.add_argument(
        "--digest-algorithms",
        default="MD5",
        help="challenge algorithms in the order offered, e.g. MD5,SHA-256 (default MD5: see ServiceConfig)",
    )
    parser.add_argument(
        "--control",
        type=_address,
        metavar="HOST:PORT",
        help="serve the HTTP control interface here; needs a secret from $SIP_CONTROL_SECRET "
        "or --control-secret-file (never from the command line)",
    )
    parser.add_argument(
        "--control-secret-file",
        metavar="PATH",
        help="file holding the control interface's shared secret (takes precedence over the environment)",
    )
    parser.add_argument(
        "--trunk",
        type=_trunk,
        metavar="sip:HOST:PORT",
        help="upstream trunk for calls to public numbers (none: such calls are refused with 502)",
    )
    parser.add_argument(
        "--public-host",
        metavar="HOST[:PORT]",
        help="address phones and the trunk reach this node on, for Record-Route and Via "
        "(default: the first --listen address)",
    )
    parser.add_argument(
        "--max-call-duration",
        type=int,
        default=7200,
        metavar="SECONDS",
        help="longest a paid call may last however much credit there is (default 7200); it also "
        "caps the credit one call reserves",
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    args.listen = args.listen or [("127.0.0.1", 5060)]
    return args


async def serve(args: argparse.Namespace, control_secret: str | None = None) -> int:
    config = ServiceConfig(
        realm=args.realm,
        store_path=args.store,
        listen=tuple(args.listen),
        node_id=args.node_id,
        min_expires=args.min_expires,
        max_expires=max(args.max_expires, args.min_expires),
        digest_algorithms=tuple(a.strip().upper() for a in args.digest_algorithms.split(",") if a.strip()),
        trunk=args.trunk,
        max_call_duration=max(1, args.max_call_duration),
        **_public(args.public_host),
    )
    node = SipNode(config)
    bound = await node.start()
    tune_gc()
    print("sipsync: listening on " + " ".join(bound), flush=True)
    if args.control is not None:
        assert control_secret is not None  # main() refuses to get here without one
        try:
            control_host, control_port = args.control
            host, port = await node.start_control(control_host, control_port, secret=control_secret)
        except OSError as error:
            print(f"sipsync: cannot serve the control interface on {args.control[0]}:{args.control[1]}: "
                  f"{error}", file=sys.stderr, flush=True)
            await node.stop()
            return 1
        print(f"sipsync: control on http://{host}:{port}", flush=True)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopped.set)
    await stopped.wait()
    await node.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    control_secret = None
    if args.control is not None:
        from sipsync.server.control import ControlSecretError, load_secret

        try:
            control_secret = load_secret(os.environ, args.control_secret_file)
        except ControlSecretError as error:
            print(f"sipsync: {error}", file=sys.stderr)
            return 2
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        import uvloop
    except ImportError:
        return asyncio.run(serve(args, control_secret))
    return uvloop.run(serve(args, control_secret))


if __name__ == "__main__":
    sys.exit(main())
