import os

import pytest

from sipsync import native


def pytest_report_header(config):
    return f"SIP service code: {native.state}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI (FORBID_SKIPS=1) a skipped test is a failure: nothing may be left unexercised."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("FORBID_SKIPS") == "1" and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.longrepr = f"skipped in CI, where nothing may be skipped: {reason}"


@pytest.fixture(autouse=True)
def _test_settings(request):
    """Fast password hashing and a fixed realm for Django tests; Django-free tests are left alone."""
    if not request.config.pluginmanager.hasplugin("django"):
        return
    settings = request.getfixturevalue("settings")
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.SIP_REALM = "sip.test"
