import pytest

from sipsync.server.dialplan import CountrySettings, to_e164

ZA = CountrySettings(country_code="27", national_prefix="0")


@pytest.mark.parametrize(
    "dialled, expected",
    [
        ("0115550100", "+27115550100"),
        ("011 555-0100", "+27115550100"),
        ("+27115550100", "+27115550100"),
        ("0027115550100", "+27115550100"),
        ("+442079460000", "+442079460000"),
        ("1001", None),
        ("0", None),
        ("012", None),
        ("+0115550100", None),
        ("0800abc", None),
        ("+1234567890123456", None),
        ("", None),
        ("٠١١٥٥٥٠١٠٠", None),
    ],
)
def test_to_e164(dialled, expected):
    assert to_e164(dialled, ZA) == expected


def test_country_without_trunk_prefix():
    assert to_e164("0115550100", CountrySettings(country_code="1", national_prefix="")) is None
    assert to_e164("+12025550100", CountrySettings(country_code="1", national_prefix="")) == "+12025550100"
