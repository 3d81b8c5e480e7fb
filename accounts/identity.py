"""Resident ID numbers (居民身份证号, GB 11643): validation, birth date, sex, masking."""

import re
from dataclasses import dataclass
from datetime import date

from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from stdnum.cn import ric
from stdnum.exceptions import InvalidComponent

from accounts.exceptions import InvalidInput

FORMAT = re.compile(r"[0-9]{17}[0-9X]")  # ASCII digits only, not any Unicode digit
# GB/T 2260 province-level codes, and 83 for residence permits of Taiwan residents.
PROVINCES = frozenset(
    "11 12 13 14 15 21 22 23 31 32 33 34 35 36 37 41 42 43 44 45 46 "
    "50 51 52 53 54 61 62 63 64 65 71 81 82 83".split()
)
# Nobody alive was born earlier; a date before it is a typing error (1800 for 1980), and would
# make an age of two centuries for the minor rules and the insurer.
EARLIEST_BIRTH_DATE = date(1900, 1, 1)
FIELD = "id_number"


class InvalidIdNumber(InvalidInput, ValueError):
    """An ID number that is not valid: the ``invalid`` input of the field ``id_number``."""


@dataclass(frozen=True)
class ResidentId:
    number: str  # normalised: 18 characters, upper-case X
    birth_date: date
    sex: str  # "M" or "F"

    @property
    def masked(self) -> str:
        return mask_id_number(self.number)


def parse_id_number(raw: str) -> ResidentId:
    """Validate an 18-character resident ID number (GB 11643) and read its birth date and sex.

    Refuses the old 15-character numbers (no check digit), a wrong check digit, an impossible
    or future birth date, one before 1900, and an unknown province.
    """
    if not isinstance(raw, str):
        raise InvalidIdNumber(_("the ID number must be a string"), field=FIELD)
    candidate = raw.strip().upper()
    if len(candidate) != 18:
        raise InvalidIdNumber(_("an ID number has 18 characters"), field=FIELD)
    if not FORMAT.fullmatch(candidate):
        raise InvalidIdNumber(_("an ID number is 17 digits and a digit or X"), field=FIELD)
    if candidate[:2] not in PROVINCES:
        raise InvalidIdNumber(
            _("the ID number's region code is not a province of China"), field=FIELD
        )
    # python-stdnum's check digit and birth date. Not its full ric.validate(): that also
    # requires the county code to have existed in the birth year, but numbers are assigned at
    # registration, years later, so it refuses real residents (a Xiamen 思明区 number,
    # 350203, of someone born before 1983).
    if ric.calc_check_digit(candidate) != candidate[-1]:
        raise InvalidIdNumber(_("the ID number's check digit is wrong"), field=FIELD)
    try:
        birth = ric.get_birth_date(candidate)
    except (InvalidComponent, ValueError):
        raise InvalidIdNumber(
            _("the ID number's birth date is not a real date"), field=FIELD
        ) from None
    number = candidate
    if birth > timezone.localdate():
        raise InvalidIdNumber(_("the ID number's birth date is in the future"), field=FIELD)
    if birth < EARLIEST_BIRTH_DATE:
        raise InvalidIdNumber(_("the ID number's birth date is before 1900"), field=FIELD)
    sex = "M" if int(number[16]) % 2 else "F"
    return ResidentId(number=number, birth_date=birth, sex=sex)


def mask_id_number(number: str) -> str:
    """``350203********1234``: region and last four; birth date and sequence hidden."""
    return number[:6] + "*" * 8 + number[-4:]


def age_on(birth_date: date, day: date) -> int:
    years = day.year - birth_date.year
    if (day.month, day.day) < (birth_date.month, birth_date.day):
        years -= 1
    return years


def eighteenth_birthday(birth_date: date) -> date:
    try:
        return birth_date.replace(year=birth_date.year + 18)
    except ValueError:  # born on 29 February: of age on 1 March
        return date(birth_date.year + 18, 3, 1)
