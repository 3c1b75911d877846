"""Every rejection the service sends: one table from cause to code and reason phrase.

The cause travels on the wire in a Warning header (code 399, or 305 for codec mismatches) so a
phone's log or a packet capture says why, and is recorded as an event that the portal explains in
plain words. Unknown user and wrong password share one wire cause, so a scanner cannot tell which
usernames exist; the event keeps the precise one for the customer and staff.
"""

from dataclasses import dataclass
from enum import StrEnum
from typing import Final


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
    # --- the proxy (sipsync.server.proxy / policy / routing) ---
    FROM_MISMATCH = "from_mismatch"
    CUSTOMER_SUSPENDED = "customer_suspended"
    CALLER_TOO_MANY_CALLS = "caller_too_many_calls"
    INVALID_NUMBER = "invalid_number"
    CLASS_NOT_PERMITTED = "class_not_permitted"
    NO_RATE = "no_rate"
    INVALID_CALLER_ID = "invalid_caller_id"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    DAILY_SPEND_CAP = "daily_spend_cap"
    CODEC_MISMATCH = "codec_mismatch"
    CALLEE_BUSY = "callee_busy"
    CALLEE_FORWARDED = "callee_forwarded"
    CALLEE_DND = "callee_dnd"
    NOT_REGISTERED = "not_registered"
    UNREACHABLE = "destination_unreachable"
    NO_TRUNK = "no_trunk"
    NO_ANSWER = "no_answer"
    NO_ROUTE = "no_route"
    NO_SUCH_TRANSACTION = "no_such_transaction"
    NO_SUCH_DIALOG = "no_such_dialog"
    TOO_MANY_HOPS = "too_many_hops"
    LOOP_DETECTED = "loop_detected"
    UNSUPPORTED_EXTENSION = "unsupported_extension"
    # --- event subscriptions (sipsync.server.notifier) ---
    BAD_EVENT = "bad_event"
    SUBSCRIPTION_TOO_BRIEF = "subscription_too_brief"
    MAILBOX_NOT_OWN = "mailbox_not_own"
    WATCH_NOT_PERMITTED = "watch_not_permitted"
    WATCH_OTHER_CUSTOMER = "watch_other_customer"
    WATCH_UNKNOWN_TARGET = "watch_unknown_target"
    TOO_MANY_SUBSCRIPTIONS = "too_many_subscriptions"
    NO_SUCH_SUBSCRIPTION = "no_such_subscription"


REJECTIONS: Final[dict[Cause, tuple[int, str]]] = {
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
    # The proxy, in the order it checks an initial INVITE (see sipsync.server.policy):
    # 407 challenge / 403 credentials, disabled, password change (the Authenticator), then
    Cause.FROM_MISMATCH: (403, "Forbidden - From does not match the credentials"),
    Cause.CUSTOMER_SUSPENDED: (403, "Forbidden - Customer account suspended"),
    # A caller already at its own max_calls is refused with 403, not 486: 486 tells the caller that
    # the *callee* is busy (and the support guide says "just redial"), while this is a limit on the
    # caller's own account that redialling cannot fix; 403 is the "refused by policy" code. Checked
    # right after authentication, before anything about the destination.
    Cause.CALLER_TOO_MANY_CALLS: (403, "Forbidden - Too many simultaneous calls"),
    Cause.INVALID_NUMBER: (404, "Not Found - Invalid number"),
    Cause.CLASS_NOT_PERMITTED: (404, "Not Found - {call_class} calls not permitted"),
    Cause.NO_RATE: (404, "Not Found - No rate for the destination"),
    Cause.INVALID_CALLER_ID: (503, "Service Unavailable - Invalid caller ID"),
    Cause.INSUFFICIENT_FUNDS: (503, "Service Unavailable - Insufficient funds"),
    Cause.DAILY_SPEND_CAP: (503, "Service Unavailable - Daily spend limit reached"),
    Cause.CODEC_MISMATCH: (488, "Not Acceptable Here"),
    Cause.CALLEE_FORWARDED: (302, "Moved Temporarily"),
    Cause.CALLEE_DND: (603, "Decline"),
    Cause.CALLEE_BUSY: (486, "Busy Here"),
    Cause.NOT_REGISTERED: (480, "Temporarily Unavailable"),
    Cause.UNREACHABLE: (480, "Temporarily Unavailable - Destination unreachable"),
    Cause.NO_TRUNK: (502, "Bad Gateway - No upstream trunk configured"),
    Cause.NO_ANSWER: (408, "Request Timeout"),
    # Requests that are not new calls
    Cause.NO_ROUTE: (404, "Not Found - No route to follow"),
    Cause.NO_SUCH_TRANSACTION: (481, "Call/Transaction Does Not Exist"),
    Cause.NO_SUCH_DIALOG: (481, "Call/Transaction Does Not Exist"),
    Cause.TOO_MANY_HOPS: (483, "Too Many Hops"),
    Cause.LOOP_DETECTED: (482, "Loop Detected"),
    Cause.UNSUPPORTED_EXTENSION: (420, "Bad Extension"),
    # SUBSCRIBE (after 407 / 403 from the Authenticator and the From check)
    Cause.BAD_EVENT: (489, "Bad Event"),
    Cause.SUBSCRIPTION_TOO_BRIEF: (423, "Interval Too Brief"),
    Cause.MAILBOX_NOT_OWN: (403, "Forbidden - Not your mailbox"),
    # Watching an extension of another customer and watching one that does not exist read the
    # same on the wire, so a subscriber cannot probe which usernames other customers have.
    Cause.WATCH_NOT_PERMITTED: (403, "Forbidden - Not an extension of your company"),
    Cause.WATCH_OTHER_CUSTOMER: (403, "Forbidden - Not an extension of your company"),
    Cause.WATCH_UNKNOWN_TARGET: (403, "Forbidden - Not an extension of your company"),
    Cause.TOO_MANY_SUBSCRIPTIONS: (403, "Forbidden - Too many subscriptions"),
    Cause.NO_SUCH_SUBSCRIPTION: (481, "Subscription Does Not Exist"),
}

# Warning code per cause where RFC 3261 20.43 has a better one than 399 (miscellaneous warning).
# 305 "Incompatible media format" carries a human text (``Reply.warning``); the 399 with the
# machine-readable cause follows it.
WARNING_CODES: Final = {Cause.CODEC_MISMATCH: 305}

# What the wire says where the precise cause would help an attacker.
WIRE_CAUSE: Final = {
    Cause.UNKNOWN_USER: Cause.BAD_CREDENTIALS,
    Cause.BAD_PASSWORD: Cause.BAD_CREDENTIALS,
    Cause.WATCH_OTHER_CUSTOMER: Cause.WATCH_NOT_PERMITTED,
    Cause.WATCH_UNKNOWN_TARGET: Cause.WATCH_NOT_PERMITTED,
}


@dataclass(init=False, slots=True)
class Reply:
    """What to answer to a request; the core turns it into a response and sends it."""

    status: int
    reason: str | None
    headers: list[tuple[str, str]]
    cause: Cause | None
    account: str | None
    detail: dict | None
    durable: bool  # answer only once the local store has made the change durable
    warning: str | None  # text of a Warning with the cause's WARNING_CODES code

    # written out for mypyc (see sipsync.native)
    def __init__(
        self,
        status: int,
        reason: str | None = None,
        headers: list[tuple[str, str]] | None = None,
        cause: Cause | None = None,
        account: str | None = None,
        detail: dict | None = None,
        durable: bool = False,
        warning: str | None = None,
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers if headers is not None else []
        self.cause = cause
        self.account = account
        self.detail = detail
        self.durable = durable
        self.warning = warning


def warning_values(reply: Reply, host: str) -> list[str]:
    """The Warning header values for a rejection: the cause (399), after a 305/... text if any."""
    if reply.cause is None:
        return []
    wire = WIRE_CAUSE.get(reply.cause, reply.cause)
    values = [f'399 {host} "{wire}"']
    code = WARNING_CODES.get(reply.cause)
    if code is not None and reply.warning:
        values.insert(0, f'{code} {host} "{reply.warning.replace(chr(34), chr(39))}"')
    return values


def record_rejection(events, request, reply: Reply, source: tuple[str, int]) -> None:
    """Spool the event for a rejection ``reply`` sent to ``request`` from ``source``."""
    events.rejection(
        method=request.method,
        code=reply.status,
        cause=str(reply.cause),
        reason_phrase=reply.reason or "",
        account=reply.account,
        source=source,
        user_agent=request.headers.get("User-Agent"),
        call_id=request.headers.get("Call-ID"),
        detail=reply.detail,
    )


def reject(
    cause: Cause,
    *,
    account: str | None = None,
    headers: list[tuple[str, str]] | None = None,
    detail=None,
    warning: str | None = None,
) -> Reply:
    """The Reply for ``cause``; a reason phrase with ``{field}`` placeholders is filled from ``detail``."""
    status, reason = REJECTIONS[cause]
    if "{" in reason:
        reason = reason.format_map(detail or {})
    return Reply(status, reason, headers or [], cause=cause, account=account, detail=detail, warning=warning)
