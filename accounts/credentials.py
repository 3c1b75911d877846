"""SIP credentials: the guide's rules for usernames and passwords, generation, HA1 digests.

The support guide names a space in the username or password as a common cause of 403; such
values are refused here, with a message that says so, before they can reach a phone.
"""

import secrets
import string
from dataclasses import dataclass

from portal.errors import ApplicationError
from sipsync.sip.digest import compute_ha1

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 64
GENERATED_LENGTH = 20
# No look-alike characters (0/O, 1/l/I) and no symbols a phone keypad or web UI mangles.
_GENERATED_ALPHABET = "".join(c for c in string.ascii_letters + string.digits if c not in "0O1lI")
_ALLOWED_SYMBOLS = set("!#$%*+-.=?@^_~")


@dataclass(frozen=True, slots=True)
class Ha1Pair:
    md5: str
    sha256: str


def generate_sip_password() -> str:
    """A strong password: 20 characters, with lower, upper and digits present."""
    while True:
        candidate = "".join(secrets.choice(_GENERATED_ALPHABET) for _ in range(GENERATED_LENGTH))
        if (
            any(c.islower() for c in candidate)
            and any(c.isupper() for c in candidate)
            and any(c.isdigit() for c in candidate)
        ):
            return candidate


def password_problems(password: str) -> list[str]:
    """Why `password` may not be used as a SIP password; empty when it is fine."""
    problems = []
    if any(c.isspace() for c in password):
        problems.append(
            "The password contains a space. Phones often drop or mangle spaces, which ends in "
            "'403 Forbidden'; choose a password without spaces."
        )
    if len(password) < MIN_PASSWORD_LENGTH:
        problems.append(f"The password must be at least {MIN_PASSWORD_LENGTH} characters long.")
    if len(password) > MAX_PASSWORD_LENGTH:
        problems.append(f"The password must be at most {MAX_PASSWORD_LENGTH} characters long.")
    odd = sorted(
        {
            c
            for c in password
            if not (c.isascii() and (c.isalnum() or c in _ALLOWED_SYMBOLS)) and not c.isspace()
        }
    )
    if odd:
        problems.append(
            "The password may only use letters, digits and these symbols: "
            + " ".join(sorted(_ALLOWED_SYMBOLS))
            + f" (found {' '.join(odd)})."
        )
    classes = sum(
        (
            any(c.islower() for c in password),
            any(c.isupper() for c in password),
            any(c.isdigit() for c in password),
        )
    )
    if classes < 3:
        problems.append("The password needs lower-case letters, capital letters and digits.")
    return problems


def validate_sip_password(password: str) -> None:
    problems = password_problems(password)
    if problems:
        raise ApplicationError(problems[0], field_errors={"password": problems}, code="weak_password")


def validate_sip_username(username: str) -> None:
    if any(c.isspace() for c in username):
        raise ApplicationError(
            "The SIP username contains a space; phones cannot register with it.",
            field_errors={"username": ["Remove the spaces from the username."]},
        )
    if not 3 <= len(username) <= 64 or not all(c.isascii() and (c.isalnum() or c in "._-") for c in username):
        raise ApplicationError(
            "The SIP username may use 3 to 64 letters, digits, dots, dashes and underscores.",
            field_errors={"username": ["Use 3 to 64 letters, digits, '.', '-' or '_'."]},
        )


def ha1_pair(username: str, realm: str, password: str) -> Ha1Pair:
    return Ha1Pair(
        md5=compute_ha1(username, realm, password, "MD5"),
        sha256=compute_ha1(username, realm, password, "SHA-256"),
    )
