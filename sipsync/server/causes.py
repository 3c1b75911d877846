"""Every rejection the service sends: one table from cause to code and reason phrase.

The cause travels on the wire in a Warning header (code 399, or 305 for codec mismatches) so a
phone's log or a packet capture says why, and is recorded as an event that the portal explains in
plain words. Unknown user and wrong password share one wire cause, so a scanner cannot tell which
usernames exist; the event keeps the precise one for the customer and staff.
"""

from dataclasses import dataclass, field
from enum import StrEnum


class Cause(StrEnum):
    UNKNOWN_USER = "unknown_user"
    BAD_PASSWORD = "bad_password"
    BAD_CREDENTIALS = "bad_credentials"
    ACCOUNT_DISABLED = "account_disabled"
    PASSWORD_CHANGE_REQUIRED = "password_change_required"
    IDENTITY_MISMATCH = "identity_mismatch"
    RATE_LIMITED = "rate_limited"
    MALFORMED_CREDENTIALS = "malformed_credentials"
    INTERVAL_TOO_BRIEF = "interval_too_brief"
    TOO_MANY_CONTACTS = "too_many_contacts"
    OUT_OF_ORDER = "out_of_order"
    BAD_CONTACT = "bad_contact"
    MALFORMED_REQUEST = "malformed_request"
    NOT_IMPLEMENTED = "not_implemented"
    STORE_FAILURE = "store_failure"


REJECTIONS: dict[Cause, tuple[int, str]] = {
    Cause.UNKNOWN_USER: (403, "Forbidden"),
    Cause.BAD_PASSWORD: (403, "Forbidden"),
    Cause.ACCOUNT_DISABLED: (403, "Forbidden - Account disabled"),
    Cause.PASSWORD_CHANGE_REQUIRED: (403, "Password change required"),
    Cause.IDENTITY_MISMATCH: (403, "Forbidden - To does not match the credentials"),
    Cause.RATE_LIMITED: (403, "Forbidden - Too many failed attempts"),
    Cause.MALFORMED_CREDENTIALS: (400, "Bad Request - Malformed Authorization"),
    Cause.INTERVAL_TOO_BRIEF: (423, "Interval Too Brief"),
    Cause.TOO_MANY_CONTACTS: (403, "Forbidden - Too many registered contacts"),
    Cause.OUT_OF_ORDER: (500, "Out of order request"),
    Cause.BAD_CONTACT: (400, "Bad Request - Malformed Contact or Expires"),
    Cause.MALFORMED_REQUEST: (400, "Bad Request"),
    Cause.NOT_IMPLEMENTED: (501, "Not Implemented"),
    Cause.STORE_FAILURE: (500, "Server Internal Error"),
}

# What the wire says where the precise cause would help an attacker.
WIRE_CAUSE = {Cause.UNKNOWN_USER: Cause.BAD_CREDENTIALS, Cause.BAD_PASSWORD: Cause.BAD_CREDENTIALS}


@dataclass(slots=True)
class Reply:
    """What to answer to a request; the core turns it into a response and sends it."""

    status: int
    reason: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    cause: Cause | None = None
    account: str | None = None
    detail: dict | None = None
    durable: bool = False  # answer only once the local store has made the change durable


def reject(
    cause: Cause, *, account: str | None = None, headers: list[tuple[str, str]] | None = None, detail=None
) -> Reply:
    status, reason = REJECTIONS[cause]
    return Reply(status, reason, headers or [], cause=cause, account=account, detail=detail)
