"""Number normalisation shared by the portal and the SIP service (Django-free).

A customer dials in national form (0115550100), international form with the access code
(0027115550100), or E.164 (+27115550100); everything becomes E.164.
"""

from dataclasses import dataclass

INTERNATIONAL_ACCESS = "00"
_SEPARATORS = str.maketrans("", "", " -().")


@dataclass(init=False, slots=True)
class CountrySettings:
    """Read-only; built once per call (__init__ written out for mypyc, see sipsync.native)."""

    country_code: str
    national_prefix: str

    def __init__(self, country_code: str = "27", national_prefix: str = "0") -> None:
        self.country_code = country_code
        self.national_prefix = national_prefix


def to_e164(number: str, settings: CountrySettings) -> str | None:
    """The E.164 form of `number`, or None when it cannot be a public telephone number."""
    digits = number.strip().translate(_SEPARATORS)
    if digits.startswith("+"):
        national = None
        digits = digits[1:]
    elif digits.startswith(INTERNATIONAL_ACCESS):
        national = None
        digits = digits[len(INTERNATIONAL_ACCESS) :]
    elif settings.national_prefix and digits.startswith(settings.national_prefix):
        national = digits[len(settings.national_prefix) :]
        digits = settings.country_code + national
    else:
        return None
    if not digits.isdigit() or not digits.isascii() or digits[0] == "0":
        return None
    if national is not None and len(national) < 4:
        return None
    if not 7 <= len(digits) <= 15:
        return None
    return "+" + digits
