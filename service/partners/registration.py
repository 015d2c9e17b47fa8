"""Bulgarian registration numbers (ЕИК/БУЛСТАТ): 9 digits, or 13 for a branch."""

from stdnum.bg import vat
from stdnum.exceptions import ValidationError as StdnumError

from service.i18n import N_

INVALID_NUMBER = N_("Not a valid EIK/BULSTAT: 9 digits (13 for a branch) with a correct check digit.")


def branch_check_digit(number: str) -> int:
    """The 13th digit of a branch's number, from digits 9 to 12 (the 9-digit part is checked apart)."""
    digits = [int(d) for d in number[8:12]]
    total = sum(d * w for d, w in zip(digits, (2, 7, 3, 5), strict=True)) % 11
    if total == 10:
        total = sum(d * w for d, w in zip(digits, (4, 9, 5, 7), strict=True)) % 11
    return 0 if total == 10 else total


def is_valid_registration_number(number: str) -> bool:
    """Whether `number` (already compact) is an organisation's EIK: 9 digits, or 13 for a branch."""
    if not number.isdigit() or len(number) not in (9, 13):
        return False  # 10 digits is a person's EGN, which stdnum also accepts: not an organisation's
    try:
        vat.validate(number[:9])
    except StdnumError:
        return False
    return len(number) == 9 or int(number[12]) == branch_check_digit(number)


def normalise_registration_number(value: str | None) -> str | None:
    """The compact number (spaces, dashes and a BG prefix removed), or a ValueError saying what is wrong."""
    if value is None:
        return None
    compact = vat.compact(value) if value.strip() else ""
    if not compact:
        return None
    if not is_valid_registration_number(compact):
        raise ValueError(INVALID_NUMBER)
    return compact
