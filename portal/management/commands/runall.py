"""Start the whole system on one machine: web (gunicorn), Celery worker with beat, SIP service.

Each part runs as its own child process; Ctrl-C (or SIGTERM) stops them all. If any child dies,
the others are stopped too, so a broken start is never mistaken for a running system.
"""

import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management import get_commands
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Run web, Celery worker + beat and the SIP service together (embedded defaults)."

    def add_arguments(self, parser):
        parser.add_argument("--web", default="127.0.0.1:8000", help="address:port for the portal")
        parser.add_argument(
            "--sip", default=f"0.0.0.0:{settings.SIP_PUBLIC_PORT}", help="address:port for SIP"
        )
        parser.add_argument(
            "--control", default="127.0.0.1:5080", help="address:port of the SIP node's control interface"
        )

    def handle(self, *args, web: str, sip: str, control: str, **options):
        python = sys.executable
        manage = [python, os.path.join(settings.BASE_DIR, "manage.py")]
        children = {
            "web": [
                python,
                "-m",
                "gunicorn",
                "portal.wsgi",
                "--bind",
                web,
                "--workers",
                "2",
                "--access-logfile",
                "-",
            ],
            "worker": [
                python,
                "-m",
                "celery",
                "-A",
                "portal",
                "worker",
                "--beat",
                "--loglevel",
                "INFO",
                "--concurrency",
                "2",
                "--schedule",
                settings.CELERY_BEAT_SCHEDULE_FILENAME,
            ],
        }
        if "runsip" in get_commands():
            public = f"{settings.SIP_PUBLIC_HOST}:{sip.rpartition(':')[2]}"
            children["sip"] = [*manage, "runsip", "--listen", sip, "--control", control, "--public", public]
        processes = {name: subprocess.Popen(cmd, cwd=settings.BASE_DIR) for name, cmd in children.items()}
        self._announce(web, sip, "sip" in processes)
        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        exit_code = 0
        while not stopping:
            for name, process in processes.items():
                if process.poll() is not None:
                    self.stderr.write(f"{name} exited with code {process.returncode}; stopping the rest.")
                    exit_code = process.returncode or 1
                    stopping = True
            time.sleep(0.5)
        for process in processes.values():
            if process.poll() is None:
                process.terminate()
        for process in processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        if exit_code:
            sys.exit(exit_code)

    def _announce(self, web: str, sip: str, sip_running: bool) -> None:
        host, _, port = web.rpartition(":")
        self.stdout.write(self.style.SUCCESS(f"Portal:  http://{host}:{port}/   (staff console: /admin/)"))
        if sip_running:
            self.stdout.write(
                self.style.SUCCESS(
                    f"SIP:     point a softphone at {settings.SIP_PUBLIC_HOST}:{sip.rpartition(':')[2]} "
                    f"(UDP or TCP), realm/domain {settings.SIP_REALM}, "
                    "with a SIP username and password from the demo"
                )
            )
        self.stdout.write("Press Ctrl-C to stop everything.")
