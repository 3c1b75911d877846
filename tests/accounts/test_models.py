"""The database itself refuses rows that break the model's rules, whatever code writes them."""

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import CallerId, SipAccount, SipAccountCodec
from tests.factories import CustomerFactory, sip_account

pytestmark = pytest.mark.django_db

VALID = {
    "extension": "1001",
    "username": "frontdesk",
    "realm": "sip.test",
    "ha1_md5": "0" * 32,
    "ha1_sha256": "0" * 64,
}


@pytest.mark.parametrize(
    "override",
    [
        {"extension": "1"},
        {"extension": "10a1"},
        {"username": "front desk"},
        {"ha1_md5": "secret"},
        {"ha1_sha256": "Z" * 64},
        {"max_concurrent_calls": 0},
        {"forward_all_to": "abc"},
        {"realm": ""},
    ],
    ids=lambda o: next(iter(o)),
)
def test_sip_account_constraints(override):
    customer = CustomerFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        SipAccount.objects.create(
            customer=customer, password_changed_at=timezone.now(), **{**VALID, **override}
        )


def test_sip_username_unique_per_realm_but_not_across_realms():
    customer = CustomerFactory()
    SipAccount.objects.create(customer=customer, password_changed_at=timezone.now(), **VALID)
    SipAccount.objects.create(
        customer=customer,
        password_changed_at=timezone.now(),
        **{**VALID, "extension": "1002", "realm": "other"},
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        SipAccount.objects.create(
            customer=CustomerFactory(), password_changed_at=timezone.now(), **{**VALID, "extension": "1003"}
        )


def test_codec_outside_catalogue_is_refused():
    account = sip_account(CustomerFactory()).account
    with pytest.raises(IntegrityError), transaction.atomic():
        SipAccountCodec.objects.create(account=account, codec="SPEEX", position=5)


def test_caller_id_must_be_e164_and_decisions_recorded():
    customer = CustomerFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        CallerId.objects.create(customer=customer, number="0115550100")
    with pytest.raises(IntegrityError), transaction.atomic():
        CallerId.objects.create(customer=customer, number="+27115550100", status="approved")
