import pytest
from django.urls import reverse
from django.utils import timezone

from sipsync.models import DocumentKind, OutboxEntry
from tests.factories import StaffFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    client.force_login(StaffFactory(is_superuser=True))
    return client


def test_staff_see_the_outbox_but_cannot_delete_a_pending_push(staff_client):
    now = timezone.now()
    entry = OutboxEntry.objects.create(
        kind=DocumentKind.ACCOUNT, object_id=7, updated_at=now, next_attempt_at=now, last_error="node down"
    )
    listing = staff_client.get(reverse("admin:sipsync_outboxentry_changelist"))
    assert listing.status_code == 200 and b"node down" in listing.content

    delete = reverse("admin:sipsync_outboxentry_delete", args=[entry.pk])
    assert staff_client.post(delete, {"post": "yes"}).status_code == 403
    bulk = staff_client.post(
        reverse("admin:sipsync_outboxentry_changelist"),
        {"action": "delete_selected", "_selected_action": [entry.pk], "post": "yes"},
    )
    assert bulk.status_code in (200, 302)
    assert OutboxEntry.objects.filter(pk=entry.pk).exists()
