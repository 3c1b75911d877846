"""The README's run command on the embedded defaults: SQLite, filesystem broker, all processes."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _embedded_env(var_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"}}
    env["PORTAL_VAR_DIR"] = str(var_dir)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


def test_embedded_defaults_need_no_server(tmp_path):
    code = (
        "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='portal.settings'; django.setup();"
        "from django.conf import settings as s;"
        "print(s.DATABASES['default']['ENGINE']); print(s.CELERY_BROKER_URL); print(len(s.SECRET_KEY))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=_embedded_env(tmp_path),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out[0] == "django.db.backends.sqlite3"
    assert out[1] == "filesystem://"
    assert int(out[2]) >= 50
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


@pytest.mark.timeout(180)
def test_run_command_brings_the_system_up(tmp_path):
    env = _embedded_env(tmp_path)
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput"], cwd=ROOT, env=env, check=True, capture_output=True)
    seeded = subprocess.run(
        [*manage, "demo", "--if-empty"], cwd=ROOT, env=env, check=True, capture_output=True
    )
    assert b"shown once" in seeded.stdout
    web = _free_port()
    log = open(tmp_path / "runall.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [
            *manage,
            "runall",
            "--web",
            f"127.0.0.1:{web}",
            "--sip",
            f"127.0.0.1:{_free_port()}",
            "--control",
            f"127.0.0.1:{_free_port()}",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        answered = worker_ready = sip_ready = False
        while time.monotonic() < deadline and not (answered and worker_ready and sip_ready):
            assert process.poll() is None, (tmp_path / "runall.log").read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{web}/login/", timeout=2) as response:
                    answered = response.status == 200 and b"Sign in" in response.read()
            except OSError:
                pass
            log_bytes = (tmp_path / "runall.log").read_bytes()
            worker_ready = b" ready." in log_bytes
            sip_ready = (
                b"sipsync: listening on udp:127.0.0.1" in log_bytes and b"sipsync: control on" in log_bytes
            )
            time.sleep(0.5)
        output = (tmp_path / "runall.log").read_text()
        assert answered, output
        assert worker_ready, output
        assert sip_ready, output
        assert f"http://127.0.0.1:{web}/" in output
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        log.close()
    assert (tmp_path / "portal.sqlite3").exists()
