"""Writes for customers, their users, SIP accounts, codecs and caller IDs.

Every function is keyword-only, validates what it is given and raises ApplicationError (or a
subclass) with a message a user can act on. Plaintext SIP passwords leave these functions once,
in the returned value, and are never stored.
"""

import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts import credentials
from accounts.choices import DEFAULT_CODECS, CallClass, CallerIdStatus, Codec, CustomerStatus, MemberRole
from accounts.models import (
    EXTENSION_REGEX,
    MAX_VOICEMAIL_MESSAGES,
    CallerId,
    Customer,
    Membership,
    SipAccount,
    SipAccountCodec,
)
from portal.errors import ApplicationError, Conflict, PermissionDenied
from sipsync import outbox
from sipsync.server.dialplan import CountrySettings, to_e164

User = get_user_model()


@dataclass(frozen=True, slots=True)
class IssuedCredentials:
    """A SIP account with the password that was just set: show it once, then let it go."""

    account: SipAccount
    password: str


# --- customers ------------------------------------------------------------------------------


def customer_create(
    *,
    name: str,
    account_number: str | None = None,
    country_code: str = "27",
    national_prefix: str = "0",
    currency: str = "ZAR",
) -> Customer:
    name = name.strip()
    if not name:
        raise ApplicationError("A customer needs a name.", field_errors={"name": ["This field is required."]})
    _require_format(
        "account_number", account_number or "C0000000", r"[A-Z0-9]{4,16}", "4 to 16 capital letters or digits"
    )
    _require_format("country_code", country_code, r"[1-9][0-9]{0,2}", "1 to 3 digits, e.g. 27")
    _require_format("national_prefix", national_prefix, r"[0-9]{0,2}", "up to 2 digits, e.g. 0")
    currency = currency.upper()
    _require_format("currency", currency, r"[A-Z]{3}", "a three-letter ISO 4217 code, e.g. ZAR")
    attempts = 1 if account_number else 5
    for _ in range(attempts):
        number = account_number or f"C{secrets.randbelow(10**7):07d}"
        try:
            with transaction.atomic():
                customer = Customer.objects.create(
                    name=name,
                    account_number=number,
                    country_code=country_code,
                    national_prefix=national_prefix,
                    currency=currency,
                )
                outbox.enqueue_customer(customer)
                return customer
        except IntegrityError as exc:
            if account_number:
                raise _integrity_error(exc) from exc
    raise Conflict("Could not allocate a free account number; try again.")


def customer_set_status(*, customer: Customer, status: str) -> Customer:
    if status not in CustomerStatus.values:
        raise ApplicationError(
            f"Unknown customer status {status!r}.", field_errors={"status": ["Invalid choice."]}
        )
    customer.status = status
    with transaction.atomic():
        customer.save(update_fields=["status", "updated_at"])
        outbox.enqueue_customer(customer)
        outbox.enqueue_customer_accounts(customer)
    return customer


CUSTOMER_EDITABLE = ("name", "country_code", "national_prefix", "rate_plan")


def customer_update(*, customer: Customer, data: dict) -> Customer:
    """Change a customer's name, dial plan or rate plan, and push the customer to the SIP service.

    The status changes only through `customer_set_status`; the currency never changes once the
    customer exists (its ledger is in that currency).
    """
    unknown = sorted(set(data) - set(CUSTOMER_EDITABLE))
    if unknown:
        raise ApplicationError(
            f"These customer fields cannot be changed here: {', '.join(unknown)}.",
            field_errors={field: ["Cannot be changed here."] for field in unknown},
        )
    if "name" in data:
        data = {**data, "name": (data["name"] or "").strip()}
        if not data["name"]:
            raise ApplicationError(
                "A customer needs a name.", field_errors={"name": ["This field is required."]}
            )
    if "country_code" in data:
        _require_format("country_code", data["country_code"], r"[1-9][0-9]{0,2}", "1 to 3 digits, e.g. 27")
    if "national_prefix" in data:
        _require_format("national_prefix", data["national_prefix"], r"[0-9]{0,2}", "up to 2 digits, e.g. 0")
    for field, value in data.items():
        setattr(customer, field, value)
    with transaction.atomic():
        customer.save(update_fields=[*data, "updated_at"])
        outbox.enqueue_customer(customer)
    return customer


def customer_user_create(
    *, customer: Customer, username: str, email: str, password: str, role: str = MemberRole.MANAGER
):
    if role not in MemberRole.values:
        raise ApplicationError(f"Unknown role {role!r}.", field_errors={"role": ["Invalid choice."]})
    with transaction.atomic():
        if User.objects.filter(username__iexact=username).exists():
            raise Conflict(
                "That user name is taken.", field_errors={"username": ["That user name is taken."]}
            )
        user = User.objects.create_user(username=username, email=email, password=password)
        Membership.objects.create(user=user, customer=customer, role=role)
    return user


# --- SIP accounts ---------------------------------------------------------------------------


def _default_username(customer: Customer, extension: str) -> str:
    return f"{customer.account_number.lower()}{extension}"


def sip_account_create(
    *,
    customer: Customer,
    extension: str,
    label: str = "",
    username: str | None = None,
    password: str | None = None,
    codecs: Iterable[str] = DEFAULT_CODECS,
    max_concurrent_calls: int = 2,
) -> IssuedCredentials:
    if customer.status != CustomerStatus.ACTIVE:
        raise PermissionDenied("The customer is not active; SIP accounts cannot be added.")
    extension = extension.strip()
    _validate_extension(extension)
    username = username.strip() if username is not None else _default_username(customer, extension)
    credentials.validate_sip_username(username)
    if password is None:
        password = credentials.generate_sip_password()
    else:
        credentials.validate_sip_password(password)
    _validate_limit("max_concurrent_calls", max_concurrent_calls, 1, 100)
    codec_list = _validated_codecs(codecs)
    realm = settings.SIP_REALM
    if SipAccount.objects.filter(customer=customer, extension=extension).exists():
        # Named before the insert: a default username repeats the extension, so the database
        # would report whichever unique constraint it checks first (PostgreSQL: the username).
        raise _integrity_error(IntegrityError("sip_extension_unique_per_customer"))
    ha1 = credentials.ha1_pair(username, realm, password)
    try:
        with transaction.atomic():
            account = SipAccount.objects.create(
                customer=customer,
                extension=extension,
                label=label.strip(),
                username=username,
                realm=realm,
                ha1_md5=ha1.md5,
                ha1_sha256=ha1.sha256,
                password_changed_at=timezone.now(),
                max_concurrent_calls=max_concurrent_calls,
            )
            _write_codecs(account, codec_list)
            outbox.enqueue_account(account)
    except IntegrityError as exc:
        raise _integrity_error(exc) from exc
    return IssuedCredentials(account=account, password=password)


def sip_account_set_password(*, account: SipAccount, password: str | None = None) -> IssuedCredentials:
    """Set a new password (generated when none is given); clears "password change required"."""
    if password is None:
        password = credentials.generate_sip_password()
    else:
        credentials.validate_sip_password(password)
    ha1 = credentials.ha1_pair(account.username, account.realm, password)
    account.ha1_md5, account.ha1_sha256 = ha1.md5, ha1.sha256
    account.password_changed_at = timezone.now()
    account.password_change_required = False
    with transaction.atomic():
        account.save(
            update_fields=[
                "ha1_md5",
                "ha1_sha256",
                "password_changed_at",
                "password_change_required",
                "updated_at",
            ]
        )
        outbox.enqueue_account(account)
    return IssuedCredentials(account=account, password=password)


def sip_account_require_password_change(*, account: SipAccount, required: bool = True) -> SipAccount:
    """Staff flag an account: the SIP service answers its phones 403 until the password is reset."""
    account.password_change_required = required
    with transaction.atomic():
        account.save(update_fields=["password_change_required", "updated_at"])
        outbox.enqueue_account(account)
    return account


_UPDATABLE = {
    "label",
    "enabled",
    "max_concurrent_calls",
    "max_contacts",
    "forward_all_to",
    "do_not_disturb",
    "call_classes",
    "default_caller_id",
}


def sip_account_update(*, account: SipAccount, data: dict) -> SipAccount:
    unknown = set(data) - _UPDATABLE
    if unknown:
        raise ApplicationError(
            "These fields cannot be changed here: " + ", ".join(sorted(unknown)),
            field_errors={name: ["Not a changeable field."] for name in sorted(unknown)},
        )
    changed: list[str] = []
    if "label" in data:
        account.label = str(data["label"]).strip()[:100]
        changed.append("label")
    for flag in ("enabled", "do_not_disturb"):
        if flag in data:
            if not isinstance(data[flag], bool):
                raise ApplicationError(
                    f"{flag} must be true or false.", field_errors={flag: ["Must be a boolean."]}
                )
            setattr(account, flag, data[flag])
            changed.append(flag)
    if "max_concurrent_calls" in data:
        account.max_concurrent_calls = _validate_limit(
            "max_concurrent_calls", data["max_concurrent_calls"], 1, 100
        )
        changed.append("max_concurrent_calls")
    if "max_contacts" in data:
        account.max_contacts = _validate_limit("max_contacts", data["max_contacts"], 1, 20)
        changed.append("max_contacts")
    if "forward_all_to" in data:
        account.forward_all_to = _validated_forward_target(account, data["forward_all_to"])
        changed.append("forward_all_to")
    if "call_classes" in data:
        classes = _validated_call_classes(data["call_classes"])
        for cls, field in SipAccount.CALL_CLASS_FIELDS.items():
            setattr(account, field, cls in classes)
            changed.append(field)
    if "default_caller_id" in data:
        account.default_caller_id = _validated_default_caller_id(account, data["default_caller_id"])
        changed.append("default_caller_id")
    if changed:
        with transaction.atomic():
            account.save(update_fields=[*changed, "updated_at"])
            outbox.enqueue_account(account)
    return account


def sip_account_set_voicemail(*, account: SipAccount, new: object, old: object) -> SipAccount:
    """Record the account's mailbox counts (from a voicemail system or the customer).

    Subscribed phones hear of a change through the SIP service (message-summary NOTIFY), so a
    write that changes nothing is skipped: it would only make every phone's lamp blink again.
    """
    counts = {
        "voicemail_new": _validate_limit("new", new, 0, MAX_VOICEMAIL_MESSAGES),
        "voicemail_old": _validate_limit("old", old, 0, MAX_VOICEMAIL_MESSAGES),
    }
    changed = [field for field, value in counts.items() if getattr(account, field) != value]
    if changed:
        for field in changed:
            setattr(account, field, counts[field])
        with transaction.atomic():
            account.save(update_fields=[*changed, "updated_at"])
            outbox.enqueue_account(account)
    return account


def sip_account_set_codecs(*, account: SipAccount, codecs: Iterable[str]) -> list[str]:
    codec_list = _validated_codecs(codecs)
    with transaction.atomic():
        SipAccount.objects.select_for_update().filter(pk=account.pk).first()
        account.codec_assignments.all().delete()
        _write_codecs(account, codec_list)
        account.save(update_fields=["updated_at"])
        outbox.enqueue_account(account)
    return codec_list


def _write_codecs(account: SipAccount, codecs: list[str]) -> None:
    SipAccountCodec.objects.bulk_create(
        [SipAccountCodec(account=account, codec=codec, position=index) for index, codec in enumerate(codecs)]
    )


# --- caller IDs -----------------------------------------------------------------------------


def caller_id_request(*, customer: Customer, number: str, requested_by=None) -> CallerId:
    e164 = to_e164(number, CountrySettings(customer.country_code, customer.national_prefix))
    if e164 is None:
        raise ApplicationError(
            f"{number!r} is not a telephone number we can use as a caller ID. Write it as "
            f"{customer.national_prefix}XXXXXXXXX or in international form (+{customer.country_code}...).",
            field_errors={"number": ["Not a valid telephone number."]},
        )
    try:
        with transaction.atomic():
            caller_id = CallerId.objects.create(customer=customer, number=e164, requested_by=requested_by)
            outbox.enqueue_customer_accounts(customer)
            return caller_id
    except IntegrityError as exc:
        raise Conflict(
            f"{e164} has already been requested.", field_errors={"number": ["Already requested."]}
        ) from exc


def caller_id_approve(*, caller_id: CallerId, by) -> CallerId:
    with transaction.atomic():
        decided = _decide_caller_id(caller_id=caller_id, by=by, status=CallerIdStatus.APPROVED, note="")
        outbox.enqueue_customer_accounts(decided.customer)
    return decided


def caller_id_reject(*, caller_id: CallerId, by, note: str = "") -> CallerId:
    with transaction.atomic():
        decided = _decide_caller_id(caller_id=caller_id, by=by, status=CallerIdStatus.REJECTED, note=note)
        SipAccount.objects.filter(default_caller_id=decided).update(
            default_caller_id=None, updated_at=timezone.now()
        )
        outbox.enqueue_customer_accounts(decided.customer)
    return decided


def _decide_caller_id(*, caller_id: CallerId, by, status: str, note: str) -> CallerId:
    if not getattr(by, "is_staff", False):
        raise PermissionDenied("Only the provider's staff can approve or reject caller IDs.")
    caller_id.status = status
    caller_id.decided_by = by
    caller_id.decided_at = timezone.now()
    caller_id.decision_note = note.strip()[:300]
    caller_id.save(update_fields=["status", "decided_by", "decided_at", "decision_note"])
    return caller_id


# --- validation helpers ---------------------------------------------------------------------


def _require_format(field: str, value: str, pattern: str, description: str) -> None:
    if not isinstance(value, str) or not re.fullmatch(pattern, value):
        raise ApplicationError(
            f"{field.replace('_', ' ').capitalize()} must be {description}.",
            field_errors={field: [f"Use {description}."]},
        )


def _validate_extension(extension: str) -> None:
    if not re.fullmatch(EXTENSION_REGEX, extension):
        raise ApplicationError(
            "An extension is 2 to 8 digits, e.g. 1001.", field_errors={"extension": ["Use 2 to 8 digits."]}
        )


def _validate_limit(field: str, value, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ApplicationError(
            f"{field.replace('_', ' ')} must be a whole number from {low} to {high}.",
            field_errors={field: [f"Enter a whole number from {low} to {high}."]},
        )
    return value


def _validated_codecs(codecs: Iterable[str]) -> list[str]:
    if isinstance(codecs, str):
        codecs = [codecs]
    result: list[str] = []
    for raw in codecs:
        name = str(raw).strip().upper()
        if name not in Codec.values:
            raise ApplicationError(
                f"{raw!r} is not in the codec catalogue ({', '.join(Codec.values)}).",
                field_errors={"codecs": [f"Unknown codec {raw!r}."]},
            )
        if name in result:
            raise ApplicationError(
                f"{name} is listed twice.", field_errors={"codecs": [f"{name} is listed twice."]}
            )
        result.append(name)
    if not result:
        raise ApplicationError(
            "An account needs at least one codec, or every call would fail with 488.",
            field_errors={"codecs": ["Choose at least one codec."]},
        )
    return result


def _validated_call_classes(classes) -> set[str]:
    if isinstance(classes, str) or not isinstance(classes, list | tuple | set | frozenset):
        raise ApplicationError(
            "call_classes must be a list.", field_errors={"call_classes": ["Must be a list."]}
        )
    unknown = [c for c in classes if c not in CallClass.values]
    if unknown:
        raise ApplicationError(
            f"Unknown call classes: {', '.join(map(str, unknown))}.",
            field_errors={"call_classes": [f"Choose from {', '.join(CallClass.values)}."]},
        )
    return set(classes)


def _validated_forward_target(account: SipAccount, target) -> str:
    target = str(target or "").strip()
    if not target:
        return ""
    if (
        target.isdigit()
        and len(target) <= 8
        and SipAccount.objects.filter(customer_id=account.customer_id, extension=target).exists()
    ):
        if target == account.extension:
            raise ApplicationError(
                "An account cannot forward to itself.",
                field_errors={"forward_all_to": ["Forwards to itself."]},
            )
        return target
    customer = account.customer
    e164 = to_e164(target, CountrySettings(customer.country_code, customer.national_prefix))
    if e164 is None:
        raise ApplicationError(
            f"{target!r} is neither one of your extensions nor a telephone number.",
            field_errors={"forward_all_to": ["Enter an extension or a telephone number."]},
        )
    return e164


def _validated_default_caller_id(account: SipAccount, value) -> CallerId | None:
    if value in (None, ""):
        return None
    caller_id = value if isinstance(value, CallerId) else CallerId.objects.filter(pk=value).first()
    if caller_id is None or caller_id.customer_id != account.customer_id:
        raise ApplicationError(
            "No such caller ID.", field_errors={"default_caller_id": ["No such caller ID."]}
        )
    if caller_id.status != CallerIdStatus.APPROVED:
        raise ApplicationError(
            f"{caller_id.number} is not approved yet; calls presenting it would fail with 503.",
            field_errors={"default_caller_id": ["Only approved caller IDs can be the default."]},
        )
    return caller_id


def _integrity_error(exc: IntegrityError) -> ApplicationError:
    text = str(exc).lower()
    if "sip_username_unique_per_realm" in text or "username" in text:
        return Conflict(
            "That SIP username is taken.", field_errors={"username": ["That SIP username is taken."]}
        )
    if "sip_extension_unique_per_customer" in text or "extension" in text:
        return Conflict(
            "That extension exists already.", field_errors={"extension": ["That extension exists already."]}
        )
    if "account_number" in text:
        return Conflict("That account number is taken.", field_errors={"account_number": ["Taken."]})
    return ApplicationError("The change breaks a data rule: " + str(exc).splitlines()[0])
