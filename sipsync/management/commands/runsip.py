"""Start the SIP service with the portal's settings.

The service itself does not use Django: this command only turns settings into arguments and
replaces itself with `python -m sipsync.server`, so the running node has no Django loaded.
"""

import os
import sys

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Run a SIP service node (registrar/proxy) on the given address, UDP and TCP."

    def add_arguments(self, parser):
        parser.add_argument("--listen", default=f"0.0.0.0:{settings.SIP_PUBLIC_PORT}", help="host:port")
        parser.add_argument(
            "--store", default=str(settings.VAR_DIR / "sip.sqlite3"), help="the node's local store"
        )
        parser.add_argument("--node-id", default="local")
        parser.add_argument("--control", default="127.0.0.1:5080", help="host:port of the control interface")
        parser.add_argument(
            "--public",
            default=f"{settings.SIP_PUBLIC_HOST}:{settings.SIP_PUBLIC_PORT}",
            help="host:port phones and the trunk reach this node on (Record-Route, Via)",
        )

    def handle(self, *args, listen: str, control: str, public: str, store: str, node_id: str, **options):
        argv = [
            sys.executable,
            "-m",
            "sipsync.server",
            "--listen",
            listen,
            "--store",
            store,
            "--realm",
            settings.SIP_REALM,
            "--node-id",
            node_id,
            "--control",
            control,
            "--public-host",
            public,
        ]
        if settings.SIP_TRUNK:
            argv += ["--trunk", settings.SIP_TRUNK]
        # The control secret travels in the environment, never on the command line (ps shows argv).
        os.environ["SIP_CONTROL_SECRET"] = settings.SIP_CONTROL_SECRET
        sys.stdout.flush()
        os.chdir(settings.BASE_DIR)
        os.execv(sys.executable, argv)  # noqa: S606 - replaces this process with the Django-free node
