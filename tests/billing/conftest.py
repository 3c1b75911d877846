"""Fixtures for billing: a default plan, rates and call records written as the SIP service reports them."""

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from billing.choices import CallDisposition
from billing.models import CallRecord, Rate, RatePlan

T0 = datetime(2026, 1, 1, tzinfo=UTC)  # the default plan's rates start here
_ids = itertools.count(1)


@pytest.fixture(autouse=True)
def _no_push(monkeypatch):
    """Outbox entries are written as usual; the Celery push after commit is not sent anywhere."""
    monkeypatch.setattr("sipsync.outbox._push_after_commit", lambda entry_ids: None)


def make_rate(plan, prefix, price="1.20", *, fee="0", first=60, nxt=60, start=T0, end=None, description=None):
    return Rate.objects.create(
        plan=plan,
        prefix=prefix,
        description=description or f"Destination {prefix}",
        price_per_minute=Decimal(price),
        connect_fee=Decimal(fee),
        first_increment=first,
        next_increment=nxt,
        effective_from=start,
        effective_to=end,
    )


def make_record(
    customer,
    number="+27115550100",
    *,
    duration=61,
    at=None,
    answered=True,
    record_id=None,
    call_class="",
    disposition=None,
):
    invited = at or T0 + timedelta(days=30)
    return CallRecord.objects.create(
        record_id=record_id or f"node1-{next(_ids)}",
        customer=customer,
        caller="alice",
        dialled_number=number.lstrip("+"),
        normalised_number=number,
        invited_at=invited,
        answered_at=invited + timedelta(seconds=2) if answered else None,
        ended_at=invited + timedelta(seconds=2 + duration),
        duration_seconds=duration if answered else 0,
        disposition=disposition or (CallDisposition.ANSWERED if answered else CallDisposition.FAILED),
        final_code=200 if answered else 486,
        call_class=call_class,
    )


@pytest.fixture
def plan(db):
    plan = RatePlan.objects.create(name="Standard", currency="ZAR", is_default=True)
    make_rate(plan, "27", "0.60", description="South Africa")
    make_rate(plan, "2711", "0.30", description="Johannesburg")
    make_rate(plan, "278", "1.20", first=30, nxt=6, description="South Africa mobile")
    make_rate(plan, "44", "0.90", fee="0.10", first=1, nxt=1, description="United Kingdom")
    return plan
