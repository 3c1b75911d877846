"""API keys: create (the plaintext is returned once), authenticate, record use, revoke.

A key looks like `pbx_<prefix>_<secret>`: the prefix (10 characters) is stored in the clear to
find the row; only the SHA-256 digest of the whole key is kept. The secret has 256 bits of
entropy, so a fast hash is enough (there is nothing to brute-force as with a password), and
the check is one indexed lookup and one `hmac.compare_digest`.
"""

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import ApiKey, Customer
from portal.errors import ApplicationError, Conflict, NotFound, PermissionDenied
from portal.tenancy import Tenant, scope

KEY_PREFIX = "pbx"
PREFIX_LENGTH = 10
# Writing last_used_at on every request would turn each read into a write; once a minute is
# precise enough for "is this key still in use?".
LAST_USED_PRECISION = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A key that was just created: show `plaintext` once, then let it go."""

    key: ApiKey
    plaintext: str


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def split_key(plaintext: str) -> str | None:
    """The lookup prefix of a presented key, or None when it is not shaped like one of ours."""
    parts = plaintext.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or len(parts[1]) != PREFIX_LENGTH or not parts[2]:
        return None
    return parts[1]


def api_key_create(*, name: str, customer: Customer | None = None, user=None) -> IssuedKey:
    """A key for `customer`, or, without one, a staff key acting as the staff `user`."""
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise ApplicationError(
            "A key needs a name of 1 to 100 characters.", field_errors={"name": ["Enter a name."]}
        )
    if customer is None:
        if user is None or not user.is_staff or not user.is_active:
            raise PermissionDenied("A staff key must act as an active staff user.")
    elif user is not None and getattr(getattr(user, "membership", None), "customer_id", None) != customer.pk:
        raise ApplicationError(
            "The user does not belong to that customer.", field_errors={"user": ["Not a member."]}
        )
    for _ in range(5):
        prefix = secrets.token_hex(PREFIX_LENGTH // 2)
        plaintext = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
        try:
            with transaction.atomic():
                key = ApiKey.objects.create(
                    name=name, prefix=prefix, key_hash=hash_key(plaintext), customer=customer, user=user
                )
            return IssuedKey(key=key, plaintext=plaintext)
        except IntegrityError:  # a prefix collision: draw again
            continue
    raise Conflict("Could not allocate a key; try again.")


def api_key_authenticate(plaintext: str) -> ApiKey | None:
    """The active key `plaintext` names, or None. Staff keys whose user lost staff rights fail."""
    prefix = split_key(plaintext)
    if prefix is None:
        return None
    key = ApiKey.objects.select_related("user", "customer").filter(prefix=prefix).first()
    if key is None or not hmac.compare_digest(key.key_hash, hash_key(plaintext)):
        return None
    if key.revoked_at is not None:
        return None
    if key.is_staff and not (key.user.is_active and key.user.is_staff):
        return None
    if key.user is not None and not key.user.is_active:
        return None
    return key


def api_key_mark_used(*, key: ApiKey, now=None) -> None:
    now = now or timezone.now()
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_PRECISION:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now


def api_key_revoke(*, key: ApiKey) -> ApiKey:
    """Revoke `key` (idempotent: revoking twice keeps the first time)."""
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
    return key


def api_key_list(*, tenant: Tenant):
    """Keys the tenant may see: staff every key, a customer its own (staff keys have no customer)."""
    return scope(ApiKey.objects.select_related("customer", "user"), tenant)


def api_key_get(*, tenant: Tenant, key_id: int) -> ApiKey:
    key = api_key_list(tenant=tenant).filter(pk=key_id).first()
    if key is None:
        raise NotFound("No such API key.")
    return key
