import factory
from django.contrib.auth import get_user_model

from accounts import services as account_services
from accounts.models import Customer


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password("correct horse battery")


class StaffFactory(UserFactory):
    is_staff = True


class CustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Customer

    account_number = factory.Sequence(lambda n: f"C{n + 1000000:07d}")
    name = factory.Sequence(lambda n: f"Customer {n}")


def customer_user(customer, username=None):
    return account_services.customer_user_create(
        customer=customer,
        username=username or f"member-{customer.account_number.lower()}",
        email="member@example.com",
        password="correct horse battery",
    )


def sip_account(customer, extension="1001", **kwargs):
    return account_services.sip_account_create(customer=customer, extension=extension, **kwargs)
