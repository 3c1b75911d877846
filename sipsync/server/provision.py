"""Load account provisioning documents into a SIP node's local store (while the node is stopped).

The portal pushes documents over the control interface; this loader is for tests, benchmarks
and a demo without the portal:

    python -m sipsync.server.provision --store var/sip.sqlite3 accounts.jsonl

Each line of the file is one account document (see `Account.from_document`).
"""

import argparse
import json
import sys
from collections.abc import Iterable

from sipsync.server.accounts import AccountTable, ProvisioningError
from sipsync.server.store import LocalStore
from sipsync.sip.digest import compute_ha1


def document_for_password(username: str, realm: str, password: str, *, version: int = 1, **fields) -> dict:
    """An account document with digests computed from a known password (tests, benchmarks, demo)."""
    document = {
        "kind": "account",
        "version": version,
        "username": username,
        "realm": realm,
        "customer": "C0000001",
        "extension": None,
        "ha1_md5": compute_ha1(username, realm, password, "MD5"),
        "ha1_sha256": compute_ha1(username, realm, password, "SHA-256"),
        "enabled": True,
        "password_change_required": False,
        "codecs": ["PCMU", "G729"],
        "caller_ids": [],
        "default_caller_id": None,
        "permissions": ["internal", "national", "mobile"],
        "max_calls": 2,
        "max_contacts": 5,
        "forward_all": None,
        "dnd": False,
    }
    document.update(fields)
    return document


def load_documents(store_path: str, documents: Iterable[dict]) -> tuple[int, int]:
    """Apply `documents` to the store at `store_path`; returns (applied, ignored as not newer)."""
    applied = ignored = 0
    with LocalStore(store_path) as store:
        table = AccountTable(store)
        for document in documents:
            if table.apply(document):
                applied += 1
            else:
                ignored += 1
        store.flush()
    return applied, ignored


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True, help="path of the node's SQLite store")
    parser.add_argument("file", help="JSON lines, one account document per line ('-' for stdin)")
    args = parser.parse_args(argv)
    handle = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8")  # noqa: SIM115
    try:
        documents = [json.loads(line) for line in handle if line.strip()]
        applied, ignored = load_documents(args.store, documents)
    except (ValueError, ProvisioningError) as error:
        print(f"provision: {error}", file=sys.stderr)
        return 2
    finally:
        if handle is not sys.stdin:
            handle.close()
    print(f"provision: {applied} applied, {ignored} ignored (not newer than held)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
