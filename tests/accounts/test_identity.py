"""Resident ID numbers: GB 11643 validation with python-stdnum, birth date, sex, masking."""

from datetime import date

import pytest

from accounts.identity import (
    InvalidIdNumber,
    age_on,
    eighteenth_birthday,
    mask_id_number,
    parse_id_number,
)

VALID_X = "11010519491231002X"


def test_valid_number_gives_birth_date_and_sex():
    parsed = parse_id_number(VALID_X)
    assert parsed.birth_date == date(1949, 12, 31)
    assert parsed.sex == "F"  # the 17th digit (2) is even
    assert parsed.masked == "110105********002X"


def test_lower_case_x_is_the_same_number():
    assert parse_id_number("11010519491231002x").number == VALID_X
    assert parse_id_number(" 11010519491231002x ").number == VALID_X


@pytest.mark.parametrize(
    ("number", "message"),
    [
        ("110105194912310021", "check digit"),
        ("11010519491231002", "18 characters"),
        ("1101051949123100211", "18 characters"),
        ("110105491231002", "18 characters"),  # the old 15-digit form has no check digit
        ("110105194913310021", "birth date"),  # month 13, check digit right
        ("110105194902300020", "birth date"),  # 30 February, check digit right
        ("110105209901010020", "future"),
        ("11010519491231002Y", "17 digits"),
        ("", "18 characters"),
        ("990105194912310024", "province"),
    ],
)
def test_invalid_numbers_are_refused_with_the_reason(number, message):
    with pytest.raises(InvalidIdNumber, match=message):
        parse_id_number(number)


def test_leap_day_birth_is_valid_and_comes_of_age_on_first_of_march():
    parsed = parse_id_number("110105200002290021")
    assert parsed.birth_date == date(2000, 2, 29)
    assert eighteenth_birthday(parsed.birth_date) == date(2018, 3, 1)


def test_minor_until_the_day_before_the_18th_birthday():
    born = date(2008, 11, 23)
    assert age_on(born, date(2026, 11, 22)) == 17
    assert age_on(born, date(2026, 11, 23)) == 18
    assert eighteenth_birthday(born) == date(2026, 11, 23)


def test_mask_keeps_region_and_last_four_only():
    assert mask_id_number("350203198001011234") == "350203********1234"


def test_county_codes_newer_than_the_birth_year_are_accepted():
    # 350203 (厦门 思明区) dates from 1983; residents born before then carry it all the same.
    from stdnum.cn import ric

    base = "35020319800517003"
    parsed = parse_id_number(base + ric.calc_check_digit(base + "0"))
    assert parsed.birth_date == date(1980, 5, 17)
