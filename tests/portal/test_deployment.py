"""docker-compose.yml cannot be run here (no Docker engine); check that it parses and that every
command it names exists in the project."""

import importlib
from pathlib import Path

import yaml
from django.core.management import get_commands

ROOT = Path(__file__).resolve().parents[2]


def _services():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def test_compose_file_has_the_production_services():
    assert {"postgres", "redis", "web", "worker", "beat", "sip", "migrate"} <= set(_services())


def test_every_project_command_exists():
    commands = get_commands()
    checked = 0
    for name, service in _services().items():
        command = service.get("command")
        if not command or "build" not in service:
            continue
        program = command[0]
        if program == "python":
            assert command[1] == "manage.py" and command[2] in commands, name
        elif program == "gunicorn":
            module, _, attribute = command[1].partition(":")
            assert hasattr(importlib.import_module(module), attribute or "application"), name
        elif program == "celery":
            app = importlib.import_module(command[2])
            assert app.celery_app.main == "portal", name
            assert command[3] in {"worker", "beat"}, name
        else:
            raise AssertionError(f"{name}: unknown program {program}")
        checked += 1
    assert checked == 5


def test_compose_takes_configuration_from_the_same_environment_variables():
    env = _services()["web"]["environment"]
    assert {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "SIP_NODES", "SIP_CONTROL_SECRET"} <= set(env)
