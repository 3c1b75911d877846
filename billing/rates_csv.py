"""The CSV format of a rate table: parse (every bad row reported) and write.

Columns (a header row is required; order is free, names are case-insensitive):

    prefix, description, price_per_minute, connect_fee, first_increment, next_increment

`prefix` is 1 to 15 digits of an E.164 number without '+', unique in the file; prices are
non-negative decimals with at most 5 decimal places; `connect_fee` defaults to 0 and the
increments to 60 when the column is missing or the cell empty. Row numbers in errors count the
header as row 1, as a spreadsheet shows them. Extra columns are refused (a typo must not silently
drop a price).
"""

import csv
import io
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from portal.errors import ApplicationError

COLUMNS = ("prefix", "description", "price_per_minute", "connect_fee", "first_increment", "next_increment")
REQUIRED = ("prefix", "description", "price_per_minute")
MAX_PRICE = Decimal("10000000")  # the column holds 12 digits, 5 of them decimals
MAX_INCREMENT = 3600
MAX_ROWS = 200_000
MAX_BYTES = 20 * 1024 * 1024


@dataclass(frozen=True)
class RateRow:
    row: int
    prefix: str
    description: str
    price_per_minute: Decimal
    connect_fee: Decimal
    first_increment: int
    next_increment: int


class RatesImportError(ApplicationError):
    """The file is refused; `errors` lists every bad row as (row number, reason)."""

    code = "rates_invalid"

    def __init__(self, errors: list[tuple[int, str]]):
        self.errors = errors
        shown = "; ".join(f"row {row}: {reason}" for row, reason in errors[:50])
        more = f" (and {len(errors) - 50} more)" if len(errors) > 50 else ""
        super().__init__(
            f"The rate table was not imported, {len(errors)} problem(s): {shown}{more}",
            field_errors={"file": [f"row {row}: {reason}" for row, reason in errors]},
        )


def read_text(file) -> str:
    """The text of an uploaded file, a path-less file object, bytes or str (UTF-8, BOM allowed)."""
    data = file.read() if hasattr(file, "read") else file
    if isinstance(data, bytes | bytearray):
        if len(data) > MAX_BYTES:
            raise RatesImportError([(0, f"the file is larger than {MAX_BYTES // (1024 * 1024)} MiB")])
        try:
            return bytes(data).decode("utf-8-sig")
        except UnicodeDecodeError:
            raise RatesImportError([(0, "the file is not UTF-8 text")]) from None
    if isinstance(data, str):
        return data.removeprefix("\ufeff")
    raise TypeError(f"cannot read a rate table from {type(file).__name__}")


def parse(text: str) -> list[RateRow]:
    """Every row of a rate table, or RatesImportError listing every bad row."""
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None or not any(cell.strip() for cell in header):
        raise RatesImportError([(1, "the file is empty; a header row is required")])
    names = [cell.strip().lower() for cell in header]
    errors: list[tuple[int, str]] = []
    unknown = [n for n in names if n not in COLUMNS]
    missing = [n for n in REQUIRED if n not in names]
    duplicate = sorted({n for n in names if names.count(n) > 1})
    if unknown:
        errors.append((1, f"unknown column(s): {', '.join(unknown)}; expected {', '.join(COLUMNS)}"))
    if missing:
        errors.append((1, f"missing column(s): {', '.join(missing)}"))
    if duplicate:
        errors.append((1, f"repeated column(s): {', '.join(duplicate)}"))
    if errors:
        raise RatesImportError(errors)

    rows: list[RateRow] = []
    first_row_of: dict[str, int] = {}
    for number, cells in enumerate(reader, start=2):
        if not any(cell.strip() for cell in cells):
            continue  # blank lines are allowed
        if number - 1 > MAX_ROWS:
            errors.append((number, f"more than {MAX_ROWS} rows"))
            break
        if len(cells) != len(names):
            errors.append((number, f"expected {len(names)} cells, found {len(cells)}"))
            continue
        row, problems = _row(number, dict(zip(names, (c.strip() for c in cells), strict=True)))
        if row is not None and row.prefix in first_row_of:
            problems.append(f"prefix {row.prefix} repeats row {first_row_of[row.prefix]}")
        if problems:
            errors.append((number, "; ".join(problems)))
            continue
        first_row_of[row.prefix] = number
        rows.append(row)
    if errors:
        raise RatesImportError(errors)
    if not rows:
        raise RatesImportError([(2, "the file has no rates; an empty table is not imported")])
    return rows


def write(rates) -> str:
    """A CSV that `parse` reads back to the same rates."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for rate in rates:
        writer.writerow(
            [
                rate.prefix,
                rate.description,
                _plain(rate.price_per_minute),
                _plain(rate.connect_fee),
                rate.first_increment,
                rate.next_increment,
            ]
        )
    return out.getvalue()


def _row(number: int, cells: dict[str, str]) -> tuple[RateRow | None, list[str]]:
    problems: list[str] = []
    prefix = cells.get("prefix", "").lstrip("+")
    if not (prefix.isascii() and prefix.isdigit() and 1 <= len(prefix) <= 15):
        problems.append(f"prefix {cells.get('prefix', '')!r} must be 1 to 15 digits")
    description = cells.get("description", "")
    if not description:
        problems.append("description is required")
    elif len(description) > 100:
        problems.append("description is longer than 100 characters")
    price = _price(cells.get("price_per_minute", ""), "price_per_minute", problems, required=True)
    fee = _price(cells.get("connect_fee", ""), "connect_fee", problems, required=False)
    first = _increment(cells.get("first_increment", ""), "first_increment", problems)
    nxt = _increment(cells.get("next_increment", ""), "next_increment", problems)
    if problems:
        return None, problems
    return RateRow(number, prefix, description, price, fee, first, nxt), problems


def _price(raw: str, name: str, problems: list[str], *, required: bool) -> Decimal:
    if not raw:
        if required:
            problems.append(f"{name} is required")
        return Decimal(0)
    try:
        value = Decimal(raw)
    except InvalidOperation:
        problems.append(f"{name} {raw!r} is not a number")
        return Decimal(0)
    if not value.is_finite():
        problems.append(f"{name} {raw!r} is not a number")
    elif value < 0:
        problems.append(f"{name} must not be negative")
    elif value.as_tuple().exponent < -5:
        problems.append(f"{name} has more than 5 decimal places")
    elif value >= MAX_PRICE:
        problems.append(f"{name} must be below {MAX_PRICE}")
    return value


def _increment(raw: str, name: str, problems: list[str]) -> int:
    if not raw:
        return 60
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_INCREMENT:
        problems.append(f"{name} {raw!r} must be a whole number of seconds from 1 to {MAX_INCREMENT}")
        return 60
    return int(raw)


def _plain(value: Decimal) -> str:
    """A decimal without exponent or trailing zeros beyond 2 places: 0.25, 1.5 -> 1.50, 0.12345."""
    text = f"{Decimal(value):f}"
    if "." in text:
        whole, frac = text.split(".")
        frac = frac.rstrip("0").ljust(2, "0")
        text = f"{whole}.{frac}"
    return text
