"""Celery tasks of billing: thin, named, idempotent.

- `billing.rate_pending` (beat): rate call records left unrated (stored while rating failed,
  or stored by an older release). Records flagged with a `rating_error` wait for staff to
  fix the rates and retry them from the admin.
"""

from celery import shared_task

from billing import services


@shared_task(name="billing.rate_pending", max_retries=0)
def rate_pending(limit: int = 1000) -> dict:
    report = services.call_records_rate_pending(limit=limit)
    return {
        "charged": report.charged,
        "free": report.free,
        "errors": report.errors,
        "already": report.already,
        "failed": report.failed,
    }
