"""The event packages the node notifies: their bodies, built from what the node knows.

``message-summary`` (RFC 3842): the account's voicemail counts from its provisioning document::

    Messages-Waiting: yes
    Message-Account: sip:alice@sip.example.net
    Voice-Message: 2/8 (0/0)

``dialog`` (RFC 4235): the calls of the watched extension that go through this node's proxy, as
``application/dialog-info+xml`` with ``state="full"`` (every NOTIFY carries every dialog, so a
lost or reordered one heals with the next). The node sees a call from the proxy's seat, so both
parties' dialogs follow the call: ``trying`` once the INVITE is accepted and relayed, ``early``
when the callee's phone rings (a provisional response relayed), ``confirmed`` on the answer,
``terminated`` at the end -- reported once, then dropped. Each dialog names the other party
(``<remote><identity>``: the caller's address, the callee's, or the number dialled out).
Do-not-disturb is shown as busy: an extension with ``dnd`` on carries one extra dialog
``id="dnd"`` in state ``confirmed``, which every BLF lamp shows as "on the phone" (red), the
closest the dialog package has to "do not call".
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

__all__ = [
    "ALLOW_EVENTS",
    "DIALOG",
    "MESSAGE_SUMMARY",
    "PACKAGES",
    "DialogView",
    "Package",
    "dialog_info",
    "message_summary",
]

MESSAGE_SUMMARY = "message-summary"
DIALOG = "dialog"


@dataclass(frozen=True, slots=True)
class Package:
    name: str
    content_type: str
    default_expires: int


PACKAGES: dict[str, Package] = {
    MESSAGE_SUMMARY: Package(MESSAGE_SUMMARY, "application/simple-message-summary", 3600),
    DIALOG: Package(DIALOG, "application/dialog-info+xml", 3600),
}


ALLOW_EVENTS = ", ".join(PACKAGES)


def message_summary(account_uri: str, new: int, old: int) -> bytes:
    waiting = "yes" if new > 0 else "no"
    return (
        f"Messages-Waiting: {waiting}\r\n"
        f"Message-Account: {account_uri}\r\n"
        f"Voice-Message: {new}/{old} (0/0)\r\n"
    ).encode()


@dataclass(init=False, slots=True)
class DialogView:
    """One call of an extension as its busy lamp sees it (kept for every call, watched or not:
    __init__ written out for mypyc, see sipsync.native)."""

    call_id: str
    direction: str  # "initiator" (the extension called) or "recipient" (it was called)
    state: str  # trying, early, confirmed, terminated
    local_tag: str | None
    remote_tag: str | None
    remote: str | None  # the other party's URI, shown by phones that display it

    def __init__(
        self,
        call_id: str,
        direction: str,
        state: str,
        local_tag: str | None = None,
        remote_tag: str | None = None,
        remote: str | None = None,
    ) -> None:
        self.call_id = call_id
        self.direction = direction
        self.state = state
        self.local_tag = local_tag
        self.remote_tag = remote_tag
        self.remote = remote


def dialog_info(entity: str, version: int, dialogs: list[DialogView], *, dnd: bool = False) -> bytes:
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" '
        f'version="{version}" state="full" entity={quoteattr(entity)}>',
    ]
    if dnd:
        lines.append('<dialog id="dnd"><state>confirmed</state></dialog>')
    for view in dialogs:
        attributes = [f"id={quoteattr(_dialog_id(view))}", f"call-id={quoteattr(view.call_id)}"]
        if view.local_tag:
            attributes.append(f"local-tag={quoteattr(view.local_tag)}")
        if view.remote_tag:
            attributes.append(f"remote-tag={quoteattr(view.remote_tag)}")
        attributes.append(f'direction="{view.direction}"')
        remote = f"<remote><identity>{escape(view.remote)}</identity></remote>" if view.remote else ""
        lines.append(f"<dialog {' '.join(attributes)}><state>{view.state}</state>{remote}</dialog>")
    lines.append("</dialog-info>")
    return ("\r\n".join(lines) + "\r\n").encode()


def _dialog_id(view: DialogView) -> str:
    # One call can show on both sides of one extension (calling itself): the direction tells apart.
    return f"{view.call_id}-{view.direction[0]}"
