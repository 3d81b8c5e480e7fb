"""Resident ID numbers (居民身份证号, GB 11643): validation, birth date, sex, masking."""

from dataclasses import dataclass
from datetime import date

from django.utils import timezone
from stdnum.cn import ric
from stdnum.exceptions import InvalidChecksum, InvalidComponent, InvalidFormat, InvalidLength


class InvalidIdNumber(ValueError):
    pass


@dataclass(frozen=True)
class ResidentId:
    number: str  # normalised: 18 characters, upper-case X
    birth_date: date
    sex: str  # "M" or "F"

    @property
    def masked(self) -> str:
        return mask_id_number(self.number)


def parse_id_number(raw: str) -> ResidentId:
    """Validate an 18-character resident ID number with python-stdnum.

    Refuses 15-character numbers (no check digit) and anything else GB 11643 does not allow.
    """
    if not isinstance(raw, str):
        raise InvalidIdNumber("the ID number must be a string")
    candidate = raw.strip().upper()
    if len(candidate) != 18:
        raise InvalidIdNumber("an ID number has 18 characters")
    try:
        number = ric.validate(candidate)
        birth = ric.get_birth_date(number)
    except InvalidChecksum:
        raise InvalidIdNumber("the ID number's check digit is wrong") from None
    except (InvalidComponent, ValueError):
        raise InvalidIdNumber("the ID number's birth date is not a real date") from None
    except (InvalidFormat, InvalidLength):
        raise InvalidIdNumber("an ID number is 17 digits and a digit or X") from None
    if birth > timezone.localdate():
        raise InvalidIdNumber("the ID number's birth date is in the future")
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
