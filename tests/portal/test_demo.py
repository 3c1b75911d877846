from io import StringIO

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command

from accounts.models import CallerId, Customer, SipAccount
from billing.selectors import customer_balance
from sipsync.models import DocumentKind, OutboxEntry
from sipsync.sip.digest import compute_ha1

pytestmark = pytest.mark.django_db


def test_demo_seeds_a_usable_system_and_prints_passwords_once():
    out = StringIO()
    call_command("demo", stdout=out)
    text = out.getvalue()
    customer = Customer.objects.get()
    assert customer_balance(customer=customer) == 100
    assert CallerId.objects.filter(status="approved").count() == 1
    for account in SipAccount.objects.all():
        line = next(line for line in text.splitlines() if account.username in line)
        password = line.split("password ")[1].split()[0]
        assert compute_ha1(account.username, account.realm, password) == account.ha1_md5
        assert account.default_caller_id.status == "approved"
    pushed = set(OutboxEntry.objects.values_list("kind", flat=True))
    assert {DocumentKind.ACCOUNT, DocumentKind.CUSTOMER, DocumentKind.RATE_PLAN} <= pushed
    admin_line = next(line for line in text.splitlines() if "staff admin" in line)
    name, password = admin_line.split()[2], admin_line.split()[4]
    assert authenticate(username=name, password=password).is_staff


def test_demo_if_empty_does_not_seed_twice():
    call_command("demo", stdout=StringIO())
    out = StringIO()
    call_command("demo", "--if-empty", stdout=out)
    assert Customer.objects.count() == 1
    assert "not seeding again" in out.getvalue()
