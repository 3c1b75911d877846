"""Plain-words explanations of the SIP service's rejections, for "why did my call fail?".

One entry per `Cause` the SIP service sends (`sipsync.server.causes`); a test keeps the two in
step. The wording follows the provider's support guide, written for this portal: where the guide
says "Ninja portal" the customer finds the setting on the named page here.
"""

from dataclasses import dataclass

from sipsync.server.causes import REJECTIONS, Cause


@dataclass(frozen=True, slots=True)
class Explanation:
    title: str
    what: str
    fix: str


_PASSWORD_PAGE = "SIP accounts → the account → Set a new password"

EXPLANATIONS: dict[Cause, Explanation] = {
    Cause.UNKNOWN_USER: Explanation(
        "Unknown SIP username",
        "The phone signed in with a username this service does not know. Often the username was "
        "typed with a space, a typo or the wrong letter case.",
        "Copy the username exactly from the account's device settings panel into the phone's "
        "'username' and 'authentication username' fields, with no spaces.",
    ),
    Cause.BAD_PASSWORD: Explanation(
        "Wrong password",
        "The phone sent a password that does not match the account. A space in the password, a "
        "typo, or a phone still holding an old password after a reset all end like this.",
        f"Type the password into the phone again. If you no longer have it, set a new one "
        f"({_PASSWORD_PAGE}) and enter that on the phone.",
    ),
    Cause.BAD_CREDENTIALS: Explanation(
        "Wrong username or password",
        "The phone's username or password is wrong (the phone is only told 'wrong username or "
        "password', so that strangers cannot probe which usernames exist).",
        f"Check the username in the device settings panel and re-enter the password; if it is "
        f"lost, set a new one ({_PASSWORD_PAGE}).",
    ),
    Cause.ACCOUNT_DISABLED: Explanation(
        "The SIP account is disabled",
        "The account is switched off, so its phones can neither register nor call.",
        "Enable the account on its Edit page (or ask the provider if it was disabled for you).",
    ),
    Cause.PASSWORD_CHANGE_REQUIRED: Explanation(
        "A password change is required",
        "The provider asked for this account's password to be changed (usually to protect the "
        "account from misuse). Until it is, every request from its phones is refused with 403, "
        "even with the right password.",
        f"Set a new password ({_PASSWORD_PAGE}) and enter it on the phone; that clears the flag.",
    ),
    Cause.IDENTITY_MISMATCH: Explanation(
        "Registering for a different account",
        "The phone authenticated as one account but tried to register another address (the To "
        "header does not match the username).",
        "In the phone, make the 'user ID'/'SIP user' and the 'authentication username' the same "
        "username shown in the device settings panel.",
    ),
    Cause.RATE_LIMITED: Explanation(
        "Too many failed sign-in attempts",
        "Too many wrong passwords came from this address in a short time, so the service is "
        "temporarily refusing it. A phone with an old password retrying in a loop causes this.",
        "Correct the password on every phone that uses this account, then wait a few minutes; "
        "the block lifts by itself.",
    ),
    Cause.MALFORMED_CREDENTIALS: Explanation(
        "The phone sent unreadable credentials",
        "The phone's sign-in data could not be read (a malformed Authorization header).",
        "Update the phone's firmware or softphone app, and re-enter username and password.",
    ),
    Cause.INTERVAL_TOO_BRIEF: Explanation(
        "Registration interval too short",
        "The phone asked to re-register more often than the service allows.",
        "Set the phone's registration expiry ('register expires') to 300 seconds or more.",
    ),
    Cause.TOO_MANY_CONTACTS: Explanation(
        "Too many devices registered",
        "More devices are registered on this account than its limit allows.",
        "Remove the account from phones you no longer use, or give each device its own SIP account.",
    ),
    Cause.OUT_OF_ORDER: Explanation(
        "Registration out of order",
        "The phone sent an older registration after a newer one (usually a network retransmission).",
        "Nothing to do if it happens once; if it repeats, restart the phone.",
    ),
    Cause.BAD_CONTACT: Explanation(
        "Malformed registration",
        "The phone's registration had an unreadable contact address or expiry.",
        "Check the phone's SIP server and port settings, and update its firmware.",
    ),
    Cause.MALFORMED_REQUEST: Explanation(
        "The phone sent a request we could not read",
        "The request was not valid SIP (for example a broken SDP body describing the audio).",
        "Update the phone's firmware or app; if it persists, contact support with the time shown.",
    ),
    Cause.NOT_IMPLEMENTED: Explanation(
        "Feature not supported",
        "The phone used a SIP method this service does not implement.",
        "Switch the related feature off on the phone; normal calls are not affected.",
    ),
    Cause.STORE_FAILURE: Explanation(
        "Temporary fault on our side",
        "The SIP service could not save the registration. This is a fault on the provider's side.",
        "The phone retries by itself; if it lasts more than a few minutes, contact support.",
    ),
    Cause.FROM_MISMATCH: Explanation(
        "Calling as someone else",
        "The call's From address does not match the account the phone signed in as.",
        "Make the phone's display/user ID the same username shown in the device settings panel.",
    ),
    Cause.CUSTOMER_SUSPENDED: Explanation(
        "Your customer account is suspended",
        "The provider has suspended your customer account, so no calls can be made.",
        "Contact the provider's support to have the account reactivated.",
    ),
    Cause.CALLER_TOO_MANY_CALLS: Explanation(
        "Too many calls at once on this account",
        "This account already has as many calls in progress as its concurrent-call limit allows "
        "({max_calls}). Redialling will not help while those calls continue.",
        "End a call first, or raise the concurrent-call limit on the account's Edit page.",
    ),
    Cause.INVALID_NUMBER: Explanation(
        "The number dialled is not valid",
        "The number dialled ({dialled}) is not a valid number in the dial plan: a digit missing "
        "or extra, or a pause between digits that made the phone dial before you finished.",
        "Dial the full number: 10 digits with the leading 0 nationally, or +country code. "
        "On a phone that dials while you type, press the dial/send key after the last digit.",
    ),
    Cause.CLASS_NOT_PERMITTED: Explanation(
        "Calls of this kind are not allowed for this account",
        "The account's call permissions do not allow {call_class} calls, so {dialled} was refused.",
        "Allow this kind of call on the account's Edit page (call permissions), if you want it.",
    ),
    Cause.NO_RATE: Explanation(
        "No rate for this destination",
        "The provider has no price for the number you dialled ({dialled}), so it cannot be called.",
        "Check the number; if it is right, ask the provider's support to open that destination.",
    ),
    Cause.INVALID_CALLER_ID: Explanation(
        "Caller ID not allowed",
        "The phone presented a caller ID ({presented}) that is not one of this account's approved "
        "numbers. Calls presenting any other number are refused with 503.",
        "Request the number on the Caller IDs page and wait for approval, or set the phone to "
        "present an approved number (or none, to use the account's default caller ID).",
    ),
    Cause.INSUFFICIENT_FUNDS: Explanation(
        "Not enough credit",
        "Your balance (less what calls in progress hold) does not cover this call.",
        "Load credit, then call again. Your balance is on the dashboard.",
    ),
    Cause.DAILY_SPEND_CAP: Explanation(
        "Daily spending limit reached",
        "Calls that cost money are paused for the rest of the day: today's calls have used the daily "
        "limit set on your account ({cap} {currency}).",
        "Calls to extensions still work. Ask your provider to raise the daily limit if you need to "
        "keep calling out today.",
    ),
    Cause.CODEC_MISMATCH: Explanation(
        "No common audio codec",
        "The phone offered only codecs that are not enabled for this account (offered: "
        "{offered}; enabled: {assigned}). By default accounts use G.711u (PCMU/ULAW) and G.729A.",
        "Enable one of the offered codecs on the account's Codecs page, or enable PCMU and/or "
        "G.729A on the phone in the same order.",
    ),
    Cause.CALLEE_BUSY: Explanation(
        "The other side is busy",
        "The person you called is on as many calls as their line allows.",
        "Nothing is wrong on your side: just redial in a while.",
    ),
    Cause.CALLEE_FORWARDED: Explanation(
        "The call was forwarded",
        "The extension you called forwards all calls elsewhere ({target}).",
        "Nothing to fix; switch off forward-all on that extension's Edit page if it is not wanted.",
    ),
    Cause.CALLEE_DND: Explanation(
        "Do not disturb",
        "The extension you called has do-not-disturb switched on and declined the call.",
        "Try later, or switch off do-not-disturb on that extension's Edit page.",
    ),
    Cause.NOT_REGISTERED: Explanation(
        "The extension is offline",
        "The extension you called has no phone registered right now.",
        "Check that the phone is on and registered (see Live registration on its page).",
    ),
    Cause.UNREACHABLE: Explanation(
        "The phone could not be reached",
        "The extension is registered but its phone did not answer the service (network or NAT).",
        "Restart the phone; if it repeats, use TCP or a shorter registration interval.",
    ),
    Cause.NO_TRUNK: Explanation(
        "Outside calls are not available",
        "The service has no route to the outside network configured for this call.",
        "Contact the provider's support.",
    ),
    Cause.NO_ANSWER: Explanation(
        "No answer in time",
        "The other side did not answer before the call timed out.",
        "Try again later.",
    ),
    Cause.NO_ROUTE: Explanation(
        "Nowhere to send the request",
        "A request inside a call had no route to follow.",
        "Usually harmless; if calls drop, restart the phone.",
    ),
    Cause.NO_SUCH_TRANSACTION: Explanation(
        "Request for an unknown call",
        "The phone referred to a call the service no longer knows (it ended or timed out).",
        "Usually harmless; no action needed.",
    ),
    Cause.NO_SUCH_DIALOG: Explanation(
        "Request for an ended call",
        "The phone sent a request for a call that has already ended.",
        "Usually harmless; no action needed.",
    ),
    Cause.TOO_MANY_HOPS: Explanation(
        "The call went round too many times",
        "The request was passed on too many times (usually forwarding between numbers).",
        "Check forward-all settings so that extensions do not forward to each other.",
    ),
    Cause.LOOP_DETECTED: Explanation(
        "Forwarding loop",
        "The call came back to where it started.",
        "Check forward-all settings so that extensions do not forward to each other.",
    ),
    Cause.UNSUPPORTED_EXTENSION: Explanation(
        "Phone requires an unsupported feature",
        "The phone demanded a SIP extension this service does not support.",
        "Switch off optional features such as 'session timers required' on the phone.",
    ),
    Cause.BAD_EVENT: Explanation(
        "Phone asked for a status this service does not offer",
        "The phone subscribed to an event package ({event}) the service does not provide. It "
        "offers the voicemail lamp (message-summary) and the busy lamp (dialog) only.",
        "Switch off presence or other status features on the phone that this service lacks; "
        "voicemail and busy lamps keep working.",
    ),
    Cause.SUBSCRIPTION_TOO_BRIEF: Explanation(
        "Lamp subscription renewed too often",
        "The phone asked to renew its voicemail or busy-lamp subscription more often than the "
        "service allows (it was told the shortest interval allowed).",
        "Set the phone's subscription period (often 'BLF/MWI subscribe period') to 300 seconds "
        "or more.",
    ),
    Cause.MAILBOX_NOT_OWN: Explanation(
        "Voicemail lamp for someone else's mailbox",
        "The phone asked to watch a mailbox ({target}) that is not its own account's.",
        "Set the phone's voicemail (MWI) subscription to the account's own number, or leave it "
        "empty so that the phone uses its own account.",
    ),
    Cause.WATCH_NOT_PERMITTED: Explanation(
        "Busy lamp for an extension that is not yours",
        "A phone asked to watch an extension that does not belong to your company.",
        "Busy lamp keys can watch your own company's extensions only. Check the number on the "
        "phone's BLF key.",
    ),
    Cause.WATCH_OTHER_CUSTOMER: Explanation(
        "Busy lamp for another company's extension",
        "The phone asked to watch {target}, which belongs to another customer of the service. "
        "Busy lamps only show your own company's extensions.",
        "Change the phone's BLF key to one of your own extensions (by extension number).",
    ),
    Cause.WATCH_UNKNOWN_TARGET: Explanation(
        "Busy lamp for an unknown extension",
        "The phone asked to watch {target}, which is not one of your company's extensions.",
        "Check the extension number on the phone's BLF key against the SIP accounts page.",
    ),
    Cause.TOO_MANY_SUBSCRIPTIONS: Explanation(
        "Too many lamp subscriptions",
        "The account's phones watch more extensions and mailboxes than the service allows "
        "for one account ({limit}).",
        "Remove busy lamp keys the phone does not need, or spread them over more accounts.",
    ),
    Cause.NO_SUCH_SUBSCRIPTION: Explanation(
        "Lamp subscription had already ended",
        "The phone renewed a voicemail or busy-lamp subscription that had already expired or "
        "ended. A phone subscribes again on its own after this.",
        "Usually harmless; if a lamp stays dark, restart the phone.",
    ),
}

_BY_CODE = {
    401: Explanation(
        "Sign-in needed",
        "The service asked the phone for its password, as it always does first.",
        "Nothing to do unless it is followed by a 403.",
    ),
    403: Explanation(
        "Refused",
        "The request was refused: usually a wrong username or password.",
        "Check the username and password on the phone.",
    ),
    404: Explanation("Not found", "The number dialled was not found.", "Check the number dialled."),
    486: Explanation("Busy", "The other side is busy.", "Redial later."),
    488: Explanation(
        "Codec mismatch",
        "The phone and this account have no audio codec in common.",
        "Match the phone's codecs to the account's codecs.",
    ),
    503: Explanation(
        "Service unavailable",
        "Most often not enough credit, or a caller ID that is not approved.",
        "Load credit or check your caller IDs.",
    ),
}

_FALLBACK = Explanation(
    "Call failed",
    "The SIP service refused the request.",
    "If it keeps happening, contact support and quote the time and code shown.",
)


@dataclass(frozen=True, slots=True)
class ExplainedEvent:
    code: int | None
    reason: str
    cause: str
    title: str
    what: str
    fix: str


class _Missing(dict):
    def __missing__(self, key: str) -> str:
        return "unknown"


def _detail_values(detail: dict) -> dict:
    values = _Missing()
    for key, value in (detail or {}).items():
        if isinstance(value, list | tuple):
            value = ", ".join(str(v) for v in value) or "none"
        elif value is None:
            value = "none"
        values[str(key)] = str(value)
    return values


def explain(*, cause: str, code: int | None = None, detail: dict | None = None, reason: str = ""):
    """The explanation of one rejection, with `{placeholders}` filled from the event detail."""
    try:
        known = EXPLANATIONS.get(Cause(cause))
        wire_code = REJECTIONS.get(Cause(cause), (None, ""))[0]
    except ValueError:
        known, wire_code = None, None
    explanation = known or _BY_CODE.get(code or 0) or _FALLBACK
    values = _detail_values(detail or {})
    return ExplainedEvent(
        code=code or wire_code,
        reason=reason,
        cause=cause,
        title=explanation.title,
        what=explanation.what.format_map(values),
        fix=explanation.fix.format_map(values),
    )


def explain_event(event) -> ExplainedEvent:
    return explain(cause=event.cause, code=event.code, detail=event.detail, reason=event.reason_phrase)


def call_outcome(call) -> str:
    """Plain words for how a call (a `billing.CallRecord`) ended, worded as the diagnostics are."""
    if call.disposition == "answered":
        return "Answered"
    if call.disposition == "cancelled":
        return "Cancelled by the caller"
    return explain(cause=call.cause, code=call.final_code).title
