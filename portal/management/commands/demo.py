"""Seed a demo: a staff admin, a customer with SIP accounts, caller IDs, rates and credit.

Passwords are generated and printed once; only their hashes (HA1 for SIP) are stored.
"""

import secrets
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from accounts import services as account_services
from accounts.models import Customer
from billing import services as billing_services
from billing.models import Rate, RatePlan

DEMO_RATES = [
    ("27", "South Africa landline", "0.3500", "0.0000", 60, 60),
    ("276", "South Africa mobile", "0.8500", "0.0000", 30, 1),
    ("277", "South Africa mobile", "0.8500", "0.0000", 30, 1),
    ("278", "South Africa mobile", "0.8500", "0.0000", 30, 1),
    ("2786", "South Africa share-call", "1.2000", "0.5000", 60, 60),
    ("2790", "South Africa premium", "3.0000", "1.0000", 60, 60),
    ("44", "United Kingdom", "0.6000", "0.0000", 1, 1),
    ("1", "USA and Canada", "0.5000", "0.0000", 6, 6),
]
DEMO_ACCOUNTS = [("1001", "Reception"), ("1002", "Sales"), ("1003", "Support")]


class Command(BaseCommand):
    help = "Create a demo admin, customer, SIP accounts, caller IDs, rates and credit; print passwords once."

    def add_arguments(self, parser):
        parser.add_argument("--if-empty", action="store_true", help="do nothing when any customer exists")

    def handle(self, *args, if_empty: bool = False, **options):
        if if_empty and Customer.objects.exists():
            self.stdout.write(
                "Demo data present; not seeding again (run `manage.py demo` to add another set)."
            )
            return
        with transaction.atomic():
            lines = self._seed()
        self.stdout.write(self.style.SUCCESS("Demo data created. These passwords are shown once:"))
        for line in lines:
            self.stdout.write("  " + line)

    def _seed(self) -> list[str]:
        user_model = get_user_model()
        lines = []
        admin_name = (
            "admin"
            if not user_model.objects.filter(username="admin").exists()
            else f"admin{secrets.randbelow(1000)}"
        )
        admin_password = secrets.token_urlsafe(12)
        admin = user_model.objects.create_superuser(admin_name, f"{admin_name}@example.com", admin_password)
        lines.append(f"staff admin    {admin_name} / {admin_password}   (portal /admin/)")

        plan = RatePlan.objects.filter(is_default=True).first()
        if plan is None:
            plan = RatePlan.objects.create(name="Standard", currency="ZAR", is_default=True)
            start = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
            Rate.objects.bulk_create(
                Rate(
                    plan=plan,
                    prefix=p,
                    description=d,
                    price_per_minute=Decimal(ppm),
                    connect_fee=Decimal(fee),
                    first_increment=first,
                    next_increment=nxt,
                    effective_from=start,
                )
                for p, d, ppm, fee, first, nxt in DEMO_RATES
            )
            billing_services.rate_plan_save(plan=plan)  # pushes the rate table to the SIP nodes

        customer = account_services.customer_create(name="Acme Holdings")
        customer.rate_plan = plan
        customer.save(update_fields=["rate_plan"])
        login = f"acme-{customer.account_number.lower()}"
        login_password = secrets.token_urlsafe(12)
        account_services.customer_user_create(
            customer=customer, username=login, email="it@acme.example", password=login_password
        )
        lines.append(
            f"customer user  {login} / {login_password}   (portal sign-in, "
            f"customer {customer.account_number})"
        )

        approved = account_services.caller_id_request(customer=customer, number="0115550100")
        account_services.caller_id_approve(caller_id=approved, by=admin)
        account_services.caller_id_request(customer=customer, number="0115550101")

        for extension, label in DEMO_ACCOUNTS:
            issued = account_services.sip_account_create(customer=customer, extension=extension, label=label)
            account_services.sip_account_update(
                account=issued.account, data={"default_caller_id": approved.pk}
            )
            lines.append(
                f"SIP {extension} {label:<10} username {issued.account.username}  password {issued.password}"
                f"  realm {settings.SIP_REALM}"
            )

        billing_services.credit_load(
            customer=customer,
            amount="100.00",
            by=admin,
            idempotency_key=f"demo:{customer.account_number}",
            reference="DEMO",
            note="Demo opening credit",
        )
        lines.append(f"credit         100.00 {customer.currency} loaded")
        lines.append(
            f"SIP server     {settings.SIP_PUBLIC_HOST}:{settings.SIP_PUBLIC_PORT} (UDP or TCP), "
            "codecs PCMU + G729"
        )
        return lines
