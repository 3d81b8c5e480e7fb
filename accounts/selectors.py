"""Reads of people, credit lines and family links that are more than a ``.get()``."""

from dataclasses import dataclass
from datetime import date
from typing import Any
from uuid import UUID

from django.db.models import Q, QuerySet
from django.utils import timezone

from accounts import crypto
from accounts.identity import eighteenth_birthday, parse_id_number
from accounts.models import CreditLine, Department, FamilyLink, Institution, Person, StaffMember
from ledger.selectors import Balance, account_balances


@dataclass(frozen=True)
class StaffPlace:
    """What a staff user may see: one institution's objects, or (the platform's operators)
    every institution's. Staff placed nowhere see none."""

    institution_id: int | None
    everywhere: bool

    def sees(self, institution_id: int | None) -> bool:
        return self.everywhere or (
            self.institution_id is not None and self.institution_id == institution_id
        )

    def q(self, path: str = "institution") -> Q:
        """A filter keeping what this user may see, ``path`` leading to the institution."""
        if self.everywhere:
            return Q()
        if self.institution_id is None:
            return Q(pk__in=[])
        return Q(**{f"{path}_id": self.institution_id})


def staff_place(user: Any) -> StaffPlace:
    member = StaffMember.objects.filter(user_id=user.pk).first()
    if member is None:
        return StaffPlace(institution_id=None, everywhere=False)
    platform = member.institution_id is None and (
        user.is_superuser or user.groups.filter(name="platform").exists()
    )
    return StaffPlace(institution_id=member.institution_id, everywhere=platform)


def staff_institution(user: Any) -> Institution | None:
    """Where a staff user works; ``None`` for the platform's operators (and anyone unplaced)."""
    member = StaffMember.objects.filter(user_id=user.pk).select_related("institution").first()
    return member.institution if member is not None else None


def department_find(ref: int | str, institution: Institution | None) -> Department | None:
    """A department by its id (a number) or by its code at ``institution`` (text); text that
    names no code there but is a whole number is taken as an id."""
    if isinstance(ref, int):
        return Department.objects.filter(pk=ref).first()
    if institution is not None:
        found = Department.objects.filter(institution=institution, code=ref).first()
        if found is not None:
            return found
    if ref.isascii() and ref.isdigit() and len(ref) <= 18:
        return Department.objects.filter(pk=int(ref)).first()
    return None


def person_find(id_number: str) -> Person | None:
    """The person with this ID number, found by its keyed hash (under any configured key); an
    ``InvalidInput`` of ``id_number`` if it is not a valid resident ID number."""
    resident = parse_id_number(id_number)
    return Person.objects.filter(id_number_hash__in=crypto.lookup_hashes(resident.number)).first()


def person_named(*, name: str, id_number: str) -> Person | None:
    """The person with this ID number if ``name`` is theirs (spaces aside), else ``None``: the
    same answer whether the number is unknown or the name differs, so that asking tells
    nobody who is enrolled."""
    person = person_find(id_number)
    if person is None or "".join(person.name.split()) != "".join(name.split()):
        return None
    return person


def person_id_number(person: Person) -> str:
    """The ID number in clear, for the insurer and the like; never for output or logs."""
    return crypto.decrypt(person.id_number_encrypted)


def link_is_live(link: FamilyLink, today: date) -> bool:
    """Active and, for a minor, before the 18th birthday (checked at use, not only by the task)."""
    if link.status != FamilyLink.Status.ACTIVE:
        return False
    if link.relation == FamilyLink.Relation.PARENT_OF_MINOR:
        return today < eighteenth_birthday(link.beneficiary.birth_date)
    return True


@dataclass(frozen=True)
class LineFigures:
    """A credit line's amounts in fen: what the bank allows, holds, drawn and still free."""

    limit: int
    held: int
    drawn: int
    available: int


def line_figures(lines: list[CreditLine]) -> dict[UUID, LineFigures]:
    """Figures for several lines from their ledger balances, in one query."""
    accounts = [a for line in lines for a in (line.capacity_account, line.drawn_account)]
    balances: dict[int, Balance] = account_balances(accounts)
    figures = {}
    for line in lines:
        capacity = balances[line.capacity_account_id]
        drawn = balances[line.drawn_account_id]
        figures[line.pk] = LineFigures(
            limit=line.limit,
            held=capacity.debits_pending,
            drawn=drawn.posted,
            available=max(capacity.available or 0, 0),
        )
    return figures


def line_is_usable(line: CreditLine, today: date) -> bool:
    if line.status != CreditLine.Status.ACTIVE:
        return False
    return line.expires_on is None or today <= line.expires_on


def credit_line_status(line: CreditLine, today: date | None = None) -> str:
    """``active``, ``frozen``, ``closed``, or ``expired`` once past ``expires_on``."""
    today = today or timezone.localdate()
    if line.status == CreditLine.Status.ACTIVE and not line_is_usable(line, today):
        return "expired"
    return line.status


def lines_of(person: Person) -> QuerySet[CreditLine]:
    return (
        CreditLine.objects.filter(person=person)
        .select_related("partner", "capacity_account", "drawn_account")
        .order_by("opened_at", "id")
    )


@dataclass(frozen=True)
class Funding:
    """The credit line to carry a stay, and the family link it is reached through, if any."""

    line: CreditLine
    via_link: FamilyLink | None
    available: int


def funding_line_for(*, person: Person, amount: int, today: date | None = None) -> Funding | None:
    """The line to use for ``amount`` fen: the person's own usable line with room first (oldest
    first), else a live family link's payer line with room within the link's cap, links in the
    order they were made. ``None`` when no line can carry it."""
    today = today or timezone.localdate()
    own = [line for line in lines_of(person) if line_is_usable(line, today)]
    figures = line_figures(own)
    for line in own:
        if figures[line.pk].available >= amount:
            return Funding(line=line, via_link=None, available=figures[line.pk].available)

    links = (
        FamilyLink.objects.filter(beneficiary=person, status=FamilyLink.Status.ACTIVE)
        .select_related("payer", "beneficiary", "cap_account")
        .order_by("created_at", "id")
    )
    for link in links:
        if not link_is_live(link, today):
            continue
        payer_lines = [line for line in lines_of(link.payer) if line_is_usable(line, today)]
        payer_figures = line_figures(payer_lines)
        cap_room = None
        if link.cap_account is not None:
            cap = account_balances([link.cap_account])[link.cap_account.pk]
            cap_room = max(cap.available or 0, 0)
        for line in payer_lines:
            room = payer_figures[line.pk].available
            if cap_room is not None:
                room = min(room, cap_room)
            if room >= amount:
                return Funding(line=line, via_link=link, available=room)
    return None
