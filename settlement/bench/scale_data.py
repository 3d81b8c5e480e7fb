"""The data set of ``manage.py scale_bench``: a city's citizens, lines, stays and their ledger
history, generated in Python as text and loaded with ``COPY`` into the real tables.

What the services would write, row for row, for what is modelled here:

- institutions, departments, banks (with tiers and a signing key), the house accounts and the
  banks' pools: through the services themselves (a few hundred rows);
- each citizen: a ``Person`` whose ID number is stored as ``person_create`` stores it (Fernet
  under ``FIELD_ENCRYPTION_KEY``, the keyed lookup hash, the masked form); each has one credit
  line (``credit_line_grant``): its capacity and drawn accounts, their balance slots, the
  "limit granted" transfer from the bank's pool with its idempotency record;
- each stay (``encounter_admit``): the encounter, the institution's ``PersonSeen``, and for an
  inpatient whose line has room the waived deposit held on the line (a ``Hold`` and its
  idempotency record); each day's charge lines (``charges_post``): the lines, the patient's
  receivable account and one transaction to the revenue accounts by category;
- each settled stay (``encounter_settle`` with the insurer answering): the claim, the split
  (receivable to insurer, bank and channel), the hold captured (``hold_post``) or voided, any
  draw beyond it, the receivable, its credit movement, the receipt and the settlement; a draw
  whose due date has passed was repaid (``repayment_apply``: the repayment and the capacity
  restored on the credit ledger).

Every transaction is linked into its ledger's hash chain while it is generated
(``ledger.chain``, continuing from the chain's head), so no sealing is left to do; the stored
balance of each account is the sum of what was generated for it. Not written: audit events,
insurer call logs, webhooks to banks and SMS notices (citizens here have no phone), which are
records about the flows, not part of the money; family pay is not modelled.

The load runs in one database transaction, chunk by chunk while the next chunk is generated.
The loaded tables' foreign keys, keys, unique constraints and indexes are dropped first (but
for the keys that tables not loaded point at) and built again after the load, as
``pg_restore`` does: PostgreSQL then checks every row against each of them in one pass, and a
duplicate or a dangling reference fails the whole build. The loaded tables' own triggers are
disabled for the load (they refuse UPDATE and DELETE,
which a load does not do, and check at commit that each transaction balances: with them on,
the commit would run one check per transaction). ``verify_ledger`` afterwards proves what that
trigger would have: every transaction balances, every stored balance is the sum of its entries
and holds, limits hold and the chain is intact.
"""

import hashlib
import json
import queue
import random
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO
from uuid import UUID
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from psycopg import sql
from stdnum.cn import ric

from accounts import crypto
from accounts.identity import mask_id_number
from accounts.models import Department, Institution, Partner
from accounts.services.credit_lines import partner_pool
from accounts.services.institutions import department_ensure, institution_ensure
from accounts.services.partners import DEFAULT_TIERS, partner_create
from ledger import chain
from ledger import services as ledger_services
from ledger.models import Account, ChainHead, Ledger, Transaction

from ..models import Channel
from ..services import house
from ..services.receipts import verification_code
from ..services.repayments import _fingerprint

ACTOR = "command:scale_bench"
INSTITUTION_PREFIX = "SCALE"
PARTNER_PREFIX = "scale_bench"
# Xiamen: 23 hospitals and 39 community health centres on one platform.
HOSPITAL_SHARE = 23 / 62
HOT = house.HOT  # balance slots of a busy house account (and of a bank's pool)
BANKS = (("厦门银行", 45), ("建设银行", 25), ("工商银行", 20), ("农业银行", 10))
DISTRICTS = ("350203", "350205", "350206", "350211", "350212", "350213")
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林高罗郑梁谢宋唐许韩冯邓曹彭曾肖田董潘袁蔡蒋余于杜叶程魏苏吕丁任卢姚沈钟姜崔谭陆范汪廖石金韦贾夏付方邹熊白孟秦邱侯江尹薛闫段雷龙黎史陶贺毛郝顾龚邵万覃武钱戴严莫孔向常汤康易乔赖文"  # noqa: E501
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红鹏建林辉志宇浩凯健俊帆帅旭宁龙"
# Departments: code, name, default deposit (fen); inpatient ones take a deposit.
HOSPITAL_DEPARTMENTS = (
    ("IM", "内科", 100_000),
    ("SU", "外科", 150_000),
    ("PE", "儿科", 50_000),
    ("OP", "门诊", 0),
)
COMMUNITY_DEPARTMENTS = (("GP", "全科", 30_000), ("OP", "门诊", 0))
# The charge catalogue: code, name, category, insurance class, unit price (fen).
ITEMS = (
    ("D001", "阿莫西林胶囊", "drug", "A", 1250),
    ("D002", "头孢呋辛酯片", "drug", "B", 3860),
    ("D003", "复方甘草片", "drug", "A", 420),
    ("D004", "人血白蛋白", "drug", "C", 38000),
    ("L001", "血常规", "lab", "A", 2000),
    ("L002", "肝功能", "lab", "A", 6500),
    ("E001", "胸部CT", "exam", "B", 28000),
    ("E002", "心电图", "exam", "A", 3000),
    ("E003", "B超", "exam", "A", 12000),
    ("T001", "静脉输液", "treatment", "A", 800),
    ("T002", "换药", "treatment", "A", 1500),
    ("N001", "一级护理", "nursing", "A", 2600),
    ("B001", "普通床位费", "bed", "A", 4500),
    ("M001", "一次性输液器", "material", "B", 350),
    ("M002", "医用纱布", "material", "C", 120),
)
CATEGORIES = sorted({item[2] for item in ITEMS})
QUANTITIES = (("1.000", 1000),) * 8 + (("2.000", 2000), ("0.500", 500))
# The insurer's share of a line by class (fund, personal account), in tenths.
SHARES = {"A": (7, 1), "B": (5, 1), "C": (0, 0)}
CHANNELS = (Channel.WECHAT, Channel.ALIPAY, Channel.UNIONPAY, Channel.CASH)
OPEN_SHARE = 0.05  # stays not settled yet: admitted today, or still in hospital
HOLD_DAYS = 180  # as settlement.services.encounters.HOLD_DAYS
GRACE_DAYS = 10
NULL = "\\N"


@dataclass(frozen=True)
class Sizes:
    citizens: int
    institutions: int
    encounters: int
    lines: int
    seed: int


@dataclass
class Place:
    """An institution of the data set, with what the generator needs of it."""

    institution: Institution
    inpatient: list[tuple[int, int]]  # (department id, default deposit)
    outpatient: int  # department id
    revenue: dict[str, int]  # category -> account id
    insurer: int
    bank: dict[int, int]  # partner id -> account id
    clearing: dict[str, int]  # channel -> account id


@dataclass
class Bank:
    partner: Partner
    pool: int  # account id


@dataclass
class TableOut:
    """Rows of one table, written as ``COPY`` text to a file of their own."""

    name: str
    columns: tuple[str, ...]
    path: Path
    handle: TextIO
    rows: int = 0
    buffer: list[str] = field(default_factory=list)

    def add(self, row: str) -> None:
        self.buffer.append(row)  # flushed by the generator between stays

    def flush(self) -> None:
        if self.buffer:
            self.rows += len(self.buffer)
            self.handle.write("".join(self.buffer))
            self.buffer.clear()


TABLES: dict[str, tuple[str, ...]] = {
    "accounts_person": (
        "id",
        "name",
        "id_number_encrypted",
        "id_number_hash",
        "id_number_masked",
        "birth_date",
        "sex",
        "phone_encrypted",
        "phone_hash",
        "created_at",
        "updated_at",
        "user_id",
    ),
    "ledger_account": (
        "id",
        "code",
        "name",
        "ledger",
        "normal_side",
        "debits_must_not_exceed_credits",
        "credits_must_not_exceed_debits",
        "balance_slots",
        "created_at",
    ),
    "ledger_balanceslot": (
        "id",
        "slot",
        "debits_must_not_exceed_credits",
        "credits_must_not_exceed_debits",
        "debits_posted",
        "credits_posted",
        "debits_pending",
        "credits_pending",
        "account_id",
    ),
    "accounts_creditline": (
        "id",
        "status",
        "frozen_reason",
        "limit",
        "limit_shortfall",
        "score",
        "score_provider",
        "expires_on",
        "opened_at",
        "updated_at",
        "closed_at",
        "capacity_account_id",
        "drawn_account_id",
        "partner_id",
        "person_id",
    ),
    "ledger_hold": (
        "id",
        "ledger",
        "amount",
        "status",
        "expires_at",
        "reference",
        "created_at",
        "resolved_at",
        "credit_account_id",
        "debit_account_id",
    ),
    "ledger_transaction": (
        "id",
        "ledger",
        "kind",
        "reference",
        "description",
        "created_at",
        "hold_id",
        "reverses_id",
        "legs",
    ),
    "ledger_entry": ("id", "amount", "account_id", "transaction_id", "ledger", "leg", "legs"),
    "ledger_idempotencyrecord": ("key", "request_hash", "result_type", "result_id", "created_at"),
    "ledger_chainlink": ("id", "ledger", "seq", "hash", "transaction_id"),
    "settlement_encounter": (
        "id",
        "kind",
        "diagnosis_code",
        "status",
        "deposit_required",
        "deposit_waived",
        "line_hold_id",
        "cap_hold_id",
        "admitted_at",
        "settled_at",
        "department_id",
        "funding_line_id",
        "funding_link_id",
        "institution_id",
        "person_id",
        "admission_key",
    ),
    "accounts_personseen": ("id", "first_seen_at", "institution_id", "person_id"),
    "settlement_charge": (
        "id",
        "code",
        "name",
        "category",
        "insurance_class",
        "quantity",
        "unit_price",
        "amount",
        "service_date",
        "reason",
        "transaction_id",
        "posted_at",
        "reverses_id",
        "encounter_id",
    ),
    "settlement_insuranceclaim": (
        "id",
        "status",
        "attempts",
        "last_error",
        "next_attempt_at",
        "medfee_sumamt",
        "insurance_fund",
        "personal_account",
        "self_pay",
        "setl_id",
        "settle_msgid",
        "settle_infno",
        "lease_until",
        "reverted_at",
        "created_at",
        "updated_at",
        "encounter_id",
        "insurer_settled_at",
        "settle_key",
    ),
    "settlement_receipt": (
        "id",
        "receipt_no",
        "version",
        "content",
        "verification_code",
        "issued_at",
        "encounter_id",
        "superseded_by_id",
    ),
    "settlement_settlement": (
        "id",
        "total",
        "insurance_fund",
        "personal_account",
        "self_pay",
        "paid_by_deposit",
        "paid_by_credit",
        "paid_by_channel",
        "channel",
        "funded_by",
        "due_date",
        "receipt_no",
        "settled_at",
        "updated_at",
        "encounter_id",
    ),
    "settlement_receivable": (
        "id",
        "reference",
        "amount",
        "outstanding",
        "due_date",
        "status",
        "created_at",
        "updated_at",
        "credit_line_id",
        "encounter_id",
        "partner_id",
    ),
    "settlement_creditmovement": (
        "id",
        "reference",
        "kind",
        "amount",
        "business_date",
        "created_at",
        "partner_id",
        "receivable_id",
        "institution_id",
    ),
    "settlement_repayment": (
        "id",
        "amount",
        "bank_txn_id",
        "paid_at",
        "fingerprint",
        "created_at",
        "partner_id",
        "receivable_id",
        "outstanding_after",
        "status_after",
    ),
}
# Tables numbered by an identity column: the generator numbers their rows from the largest id.
NUMBERED = (
    "accounts_person",
    "ledger_account",
    "ledger_balanceslot",
    "ledger_entry",
    "ledger_chainlink",
    "accounts_personseen",
    "settlement_charge",
    "settlement_insuranceclaim",
    "settlement_receipt",
    "settlement_settlement",
    "settlement_creditmovement",
    "settlement_repayment",
)


def _ts(moment: datetime) -> str:
    return moment.isoformat()


def _b(value: bool) -> str:
    return "t" if value else "f"


def _n(value: object) -> str:
    return NULL if value is None else str(value)


def _key_hash(key: str) -> str:
    """As ``settlement.services.encounters._caller_key``: a caller's key in a ledger key."""
    return hashlib.sha256(key.encode()).hexdigest()[:40]


class Generator:
    """Writes the data set's rows, keeping each account's balance as it goes."""

    def __init__(
        self,
        sizes: Sizes,
        folder: Path,
        starts: dict[str, int],
        heads: dict[str, tuple[int, str]],
        places: list[Place],
        banks: list[Bank],
        log: Callable[[str], None],
    ) -> None:
        self.sizes = sizes
        self.rng = random.Random(sizes.seed)  # noqa: S311 - benchmark data
        self.log = log
        self.out = self._files(folder, 0)
        self.next = dict(starts)  # table -> last id used
        self.heads = dict(heads)  # ledger -> (seq, hash)
        self.places = places
        self.banks = banks
        self.now = timezone.now()
        self.zone = ZoneInfo(settings.TIME_ZONE)
        self.today = timezone.localdate(self.now)
        # Stored balances: [debits posted, credits posted, debits pending, credits pending].
        self.balances: dict[int, list[int]] = {}
        self.hot: dict[tuple[int, int], list[int]] = {}  # (account, slot) of busy accounts
        self.hot_accounts: set[int] = set()
        for place in places:
            self.hot_accounts.update(place.revenue.values())
            self.hot_accounts.update(place.bank.values())
            self.hot_accounts.update(place.clearing.values())
            self.hot_accounts.add(place.insurer)
        self.hot_accounts.update(bank.pool for bank in banks)
        self.turn = 0
        self.seen: set[tuple[int, int]] = set()
        self.receipts: dict[tuple[int, date], int] = {}
        self.lines: list[_Line] = []  # one per citizen, in the order of their ids
        self.names: list[str] = []
        self.holds: dict[str, tuple[str, datetime | None]] = {}
        self.hold_rows: dict[str, tuple[str, str, str]] = {}
        self.folder = folder
        self.chunk = 0
        self.first_person = self.next["accounts_person"] + 1

    # --- ids and rows ---------------------------------------------------------------------

    def _id(self, table: str) -> int:
        self.next[table] += 1
        return self.next[table]

    def _uuid4(self) -> str:
        return str(UUID(int=self.rng.getrandbits(128), version=4))

    def _uuid7(self) -> str:
        """A time-ordered id, as ``ledger.ids.uuid7`` makes one now, as text: ids follow the
        order rows are made in (the generation's), as the services' follow commit order."""
        value = (time.time_ns() // 1_000_000 & 0xFFFF_FFFF_FFFF) << 80
        value |= 0x7 << 76 | self.rng.getrandbits(12) << 64
        value |= 0b10 << 62 | self.rng.getrandbits(62)
        text = f"{value:032x}"
        return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"

    def _flush(self) -> None:
        for table in self.out.values():
            if len(table.buffer) >= 20_000:
                table.flush()

    def _account(self, code: str, name: str, ledger: str, side: str, limited: bool) -> int:
        account_id = self._id("ledger_account")
        self.out["ledger_account"].add(
            f"{account_id}\t{code}\t{name}\t{ledger}\t{side}\t{_b(limited)}\tf\t1\t"
            f"{_ts(self.now)}\n"
        )
        self.balances[account_id] = [0, 0, 0, 0]
        return account_id

    def _slot_row(self, account_id: int, limited: bool) -> None:
        dp, cp, dq, cq = self.balances.pop(account_id)
        self.out["ledger_balanceslot"].add(
            f"{self._id('ledger_balanceslot')}\t0\t{_b(limited)}\tf\t{dp}\t{cp}\t{dq}\t{cq}\t"
            f"{account_id}\n"
        )

    def _move(self, account_id: int, column: int, amount: int) -> None:
        row = self.balances.get(account_id)
        if row is None:  # a busy house account: spread over its slots, as connections do
            self.turn += 1
            row = self.hot.setdefault((account_id, self.turn % HOT), [0, 0, 0, 0])
        row[column] += amount

    def _post(
        self,
        *,
        ledger: str,
        kind: str,
        legs: list[tuple[int, int]],
        reference: str,
        description: str,
        at: datetime,
        key: str,
        request: str | None = None,
        hold: str | None = None,
        released: tuple[int, int, int] | None = None,
    ) -> str:
        """One journal transaction as the posting services write it: the row, its entries, the
        balance slots, the key's idempotency record and the chain link.

        ``request`` is the idempotency record's request hash; None for a transfer, whose hash
        is computed here."""
        txn_id = self._uuid7()
        count = len(legs)
        stamp = _ts(at)
        ordered = "[" + ",".join(f"[{a},{b}]" for a, b in sorted(legs)) + "]"
        if request is None:
            request = _transfer_hash(ordered, reference, description)
        self.out["ledger_transaction"].add(
            f"{txn_id}\t{ledger}\t{kind}\t{reference}\t{description}\t{stamp}\t{_n(hold)}\t"
            f"{NULL}\t{count}\n"
        )
        entries = self.out["ledger_entry"]
        for number, (account_id, amount) in enumerate(legs):
            entries.add(
                f"{self._id('ledger_entry')}\t{amount}\t{account_id}\t{txn_id}\t{ledger}\t"
                f"{number}\t{count}\n"
            )
            if amount > 0:
                self._move(account_id, 0, amount)
            else:
                self._move(account_id, 1, -amount)
        if released is not None:  # a hold resolved by this posting: its pending amount freed
            debit, credit, amount = released
            self._move(debit, 2, -amount)
            self._move(credit, 3, -amount)
        self.out["ledger_idempotencyrecord"].add(
            f"{key}\t{request}\ttransaction\t{txn_id}\t{stamp}\n"
        )
        # ``ledger.chain.transaction_bytes`` of the transaction, written out: the same JSON for
        # these values (ASCII references, a UTC time); verify_ledger recomputes every link.
        content = (
            f'["{txn_id}","{ledger}","{kind}","{hold or ""}","","{reference}","{description}",'
            f'"{stamp}",{ordered}]'
        )
        seq, previous = self.heads[ledger]
        digest = chain.link_hash(previous, content.encode())
        self.heads[ledger] = (seq + 1, digest)
        self.out["ledger_chainlink"].add(
            f"{self._id('ledger_chainlink')}\t{ledger}\t{seq + 1}\t{digest}\t{txn_id}\n"
        )
        return txn_id

    # --- citizens and their lines ---------------------------------------------------------

    def citizens(self) -> Iterator[int]:
        """Persons and their lines; yields how many are done, now and then."""
        rng = self.rng
        first = date(1940, 1, 1)
        days = (date(2020, 12, 31) - first).days
        step = 7919 if days % 7919 else 7907  # a stride through the days, prime to their count
        weights = [weight for _, weight in BANKS]
        hour = timedelta(hours=1)
        for index in range(self.sizes.citizens):
            born = first + timedelta(days=(index * step) % days)
            base = f"{rng.choice(DISTRICTS)}{born:%Y%m%d}{index // days + 1:03d}"
            number = base + ric.calc_check_digit(base + "0")
            person_id = self._id("accounts_person")
            name = rng.choice(SURNAMES) + "".join(rng.choices(GIVEN, k=rng.choice((1, 2))))
            created = self.now - timedelta(days=rng.uniform(400, 800))
            stamp = _ts(created)
            self.out["accounts_person"].add(
                f"{person_id}\t{name}\t{crypto.encrypt(number)}\t{crypto.lookup_hash(number)}\t"
                f"{mask_id_number(number)}\t{born.isoformat()}\t"
                f"{'M' if int(number[16]) % 2 else 'F'}\t\t\t{stamp}\t{stamp}\t{NULL}\n"
            )
            self.names.append(name)
            bank = rng.choices(self.banks, weights)[0]
            self._line(person_id, bank, created + hour)
            if index % 1000 == 999:
                self._flush()
            if index % 50_000 == 49_999:
                yield index + 1
        yield self.sizes.citizens

    def _line(self, person_id: int, bank: Bank, opened: datetime) -> None:
        score = self.rng.randint(450, 850)
        limit = [amount for least, amount in DEFAULT_TIERS if score >= least][-1]
        line_id = self._uuid4()
        partner = bank.partner
        capacity = self._account(
            f"credit:line:{line_id}:capacity",
            f"{partner.name} line capacity",
            Ledger.CREDIT,
            "credit",
            limited=True,
        )
        drawn = self._account(
            f"credit:line:{line_id}:drawn",
            f"{partner.name} line drawn",
            Ledger.CREDIT,
            "credit",
            limited=False,
        )
        stamp = _ts(opened)
        self.out["accounts_creditline"].add(
            f"{line_id}\tactive\t\t{limit}\t0\t{score}\t白鹭分\t{NULL}\t{stamp}\t{stamp}\t"
            f"{NULL}\t{capacity}\t{drawn}\t{partner.pk}\t{person_id}\n"
        )
        reference, description = f"credit-line:{line_id}", "limit granted"
        legs = [(bank.pool, limit), (capacity, -limit)]
        self._post(
            ledger=Ledger.CREDIT,
            kind=Transaction.Kind.TRANSFER,
            legs=legs,
            reference=reference,
            description=description,
            at=opened,
            key=f"credit-line:{line_id}:limit:0->{limit}:{opened.isoformat()}",
        )
        self.lines.append(_Line(line_id, partner.pk, capacity, drawn, limit))

    # --- stays ----------------------------------------------------------------------------

    def stays(self) -> Iterator[int]:
        """Encounters, their charges and settlements; yields how many are done, now and then."""
        rng = self.rng
        count = self.sizes.encounters
        hospitals = [place for place in self.places if place.institution.kind == "hospital"]
        centres = [place for place in self.places if place.institution.kind != "hospital"]
        plan = []
        for _ in range(count):
            at_hospital = not centres or (hospitals and rng.random() < 0.7)
            place = rng.choice(hospitals if at_hospital else centres)
            inpatient = rng.random() < (0.25 if at_hospital else 0.05)
            plan.append((place, inpatient, rng.random() < OPEN_SHARE))
        counts = _line_counts(rng, [inpatient for _, inpatient, _ in plan], self.sizes.lines)
        persons = self.first_person
        for number, ((place, inpatient, still_open), lines) in enumerate(
            zip(plan, counts, strict=True)
        ):
            person = rng.randrange(len(self.lines))
            self._stay(place, inpatient, still_open, lines, persons + person, self.lines[person])
            if number % 1000 == 999:
                self._flush()
            if number % 50_000 == 49_999:
                yield number + 1
        for line in self.lines:
            self._slot_row(line.capacity, limited=True)
            self._slot_row(line.drawn, limited=False)
        for person_id, institution_id in self.seen:
            self.out["accounts_personseen"].add(
                f"{self._id('accounts_personseen')}\t{_ts(self.now)}\t{institution_id}\t"
                f"{person_id}\n"
            )
        yield count

    def _local(self, day: date, hours: float) -> datetime:
        moment = datetime.combine(day, datetime.min.time(), self.zone) + timedelta(hours=hours)
        return min(moment.astimezone(UTC), self.now - timedelta(seconds=1))

    def _stay(
        self,
        place: Place,
        inpatient: bool,
        still_open: bool,
        lines: int,
        person: int,
        line: "_Line",
    ) -> None:
        rng = self.rng
        days = max(1, min(30, round(lines / rng.uniform(3, 8)))) if inpatient else 1
        days = min(days, lines)
        if still_open:
            first_day = self.today - timedelta(days=days - 1)
        else:
            first_day = self.today - timedelta(days=rng.randint(days, 365))
        admitted = self._local(first_day, rng.uniform(0, 7) if inpatient else rng.uniform(8, 16))
        encounter_id = self._uuid4()
        department, deposit = rng.choice(place.inpatient) if inpatient else (place.outpatient, 0)
        self.seen.add((person, place.institution.pk))
        hold: tuple[str, int] | None = None
        if deposit and line.available >= deposit:
            hold = (self._hold(encounter_id, line, deposit, admitted), deposit)
        # Charges, one posting a day (a HIS sends each day's orders).
        receivable = self._account(
            f"money:enc:{encounter_id}:receivable",
            "patient receivable",
            Ledger.MONEY,
            "debit",
            limited=False,
        )
        total = fund = personal = 0
        per_day = [lines // days + (1 if n < lines % days else 0) for n in range(days)]
        charges = self.out["settlement_charge"]
        for offset, on_day in enumerate(per_day):
            day = first_day + timedelta(days=offset)
            posted = max(self._local(day, rng.uniform(7, 11)), admitted)
            by_category: dict[str, int] = {}
            rows = []
            for _ in range(on_day):
                code, name, category, klass, price = rng.choice(ITEMS)
                quantity, milli = rng.choice(QUANTITIES)
                amount = (milli * price + 500) // 1000
                by_category[category] = by_category.get(category, 0) + amount
                fund += amount * SHARES[klass][0] // 10
                personal += amount * SHARES[klass][1] // 10
                rows.append((code, name, category, klass, quantity, price, amount))
            day_total = sum(by_category.values())
            total += day_total
            reference = f"encounter:{encounter_id}"
            legs = [(receivable, day_total)] + [
                (place.revenue[category], -amount)
                for category, amount in sorted(by_category.items())
            ]
            txn_id = self._post(
                ledger=Ledger.MONEY,
                kind=Transaction.Kind.TRANSFER,
                legs=legs,
                reference=reference,
                description="charges",
                at=posted,
                key=f"encounter:{encounter_id}:charges:{_key_hash(f'his:{encounter_id}:{day}')}",
            )
            stamp, service_date = _ts(posted), day.isoformat()
            for code, name, category, klass, quantity, price, amount in rows:
                charges.add(
                    f"{self._id('settlement_charge')}\t{code}\t{name}\t{category}\t{klass}\t"
                    f"{quantity}\t{price}\t{amount}\t{service_date}\t\t{txn_id}\t{stamp}\t"
                    f"{NULL}\t{encounter_id}\n"
                )
        settled = None
        funding_line = line.line_id if hold else None
        if not still_open:
            last_day = first_day + timedelta(days=days - 1)
            settled = self._local(last_day, rng.uniform(12, 20) if inpatient else 17)
            chosen = self._settle(
                encounter_id, place, person, line, hold, receivable, settled, total, fund, personal
            )
            funding_line = funding_line or chosen
        self._slot_row(receivable, limited=False)
        if hold is not None:
            self._hold_row(hold[0])
        self.out["settlement_encounter"].add(
            f"{encounter_id}\t{'inpatient' if inpatient else 'outpatient'}\t\t"
            f"{'open' if settled is None else 'settled'}\t{deposit}\t{_b(hold is not None)}\t"
            f"{_n(hold[0] if hold else None)}\t{NULL}\t{_ts(admitted)}\t"
            f"{_n(settled and _ts(settled))}\t{department}\t{_n(funding_line)}\t{NULL}\t"
            f"{place.institution.pk}\t{person}\t{NULL}\n"
        )

    def _hold(self, encounter_id: str, line: "_Line", amount: int, at: datetime) -> str:
        """``credit_hold_create`` for the waived deposit: a pending hold on the line."""
        hold_id = self._uuid7()
        expires = at + timedelta(days=HOLD_DAYS)
        reference = f"credit-line:{line.line_id}"
        # Written once its stay is over (``_hold_row``), with the status the stay left it in.
        self.hold_rows[hold_id] = (
            f"{hold_id}\t{Ledger.CREDIT}\t{amount}\t",
            f"\t{_ts(expires)}\t{reference}\t{_ts(at)}\t",
            f"\t{line.drawn}\t{line.capacity}\n",
        )
        request = ledger_services._request_hash(
            "hold_create",
            debit=line.capacity,
            credit=line.drawn,
            amount=amount,
            expires_at=expires.isoformat(),
            reference=reference,
        )
        self.out["ledger_idempotencyrecord"].add(
            f"encounter:{encounter_id}:admit:line\t{request}\thold\t{hold_id}\t{_ts(at)}\n"
        )
        self._move(line.capacity, 2, amount)
        self._move(line.drawn, 3, amount)
        line.available -= amount
        self.holds[hold_id] = ("pending", None)
        return hold_id

    def _settle(
        self,
        encounter_id: str,
        place: Place,
        person: int,
        line: "_Line",
        hold: tuple[str, int] | None,
        receivable: int,
        at: datetime,
        total: int,
        fund: int,
        personal: int,
    ) -> str | None:
        """``encounter_settle`` with the insurer answering; the line chosen now, if any."""
        rng = self.rng
        key = f"encounter:{encounter_id}:settle"
        reference = f"encounter:{encounter_id}"
        self_pay = total - fund - personal
        room = line.available + (hold[1] if hold else 0)
        chosen_now = hold is None and self_pay > 0 and line.available > 0
        from_credit = min(self_pay, room) if (hold or chosen_now) else 0
        from_channel = self_pay - from_credit
        channel = rng.choice(CHANNELS) if from_channel else ""
        legs = [(receivable, -total)]
        if fund + personal:
            legs.append((place.insurer, fund + personal))
        if from_credit:
            legs.append((place.bank[line.partner_id], from_credit))
        if from_channel:
            legs.append((place.clearing[channel], from_channel))
        self._post(
            ledger=Ledger.MONEY,
            kind=Transaction.Kind.TRANSFER,
            legs=legs,
            reference=reference,
            description="settlement",
            at=at,
            key=key,
        )
        due: date | None = None
        if from_credit:
            due = self._draw(encounter_id, place, line, hold, from_credit, key, reference, at)
        elif hold is not None:  # nothing drawn: the stay's hold is voided
            hold_id, amount = hold
            request = ledger_services._request_hash("hold_void", hold=hold_id)
            self.out["ledger_idempotencyrecord"].add(
                f"{key}:release:line\t{request}\thold\t{hold_id}\t{_ts(at)}\n"
            )
            self._move(line.capacity, 2, -amount)
            self._move(line.drawn, 3, -amount)
            line.available += amount
            self.holds[hold_id] = ("voided", at)
        funded_by = "credit" if from_credit else "channel" if from_channel else "credit"
        if not from_credit and not from_channel and hold is None:
            funded_by = "channel"
        receipt_no = self._receipt(
            encounter_id,
            place,
            at,
            {
                "patient": self.names[person - self.first_person],
                "total": total,
                "insurance_fund": fund,
                "personal_account": personal,
                "self_pay": self_pay,
                "paid_by_deposit": 0,
                "paid_by_credit": from_credit,
                "paid_by_channel": from_channel,
                "funded_by": funded_by,
                "due_date": due.isoformat() if due else None,
            },
        )
        stamp = _ts(at)
        self.out["settlement_settlement"].add(
            f"{self._id('settlement_settlement')}\t{total}\t{fund}\t{personal}\t{self_pay}\t0\t"
            f"{from_credit}\t{from_channel}\t{channel}\t{funded_by}\t{_n(due)}\t{receipt_no}\t"
            f"{stamp}\t{stamp}\t{encounter_id}\n"
        )
        self.out["settlement_insuranceclaim"].add(
            f"{self._id('settlement_insuranceclaim')}\tsettled\t1\t\t{NULL}\t{total}\t{fund}\t"
            f"{personal}\t{self_pay}\tSETL{encounter_id.replace('-', '')[:20].upper()}\t\t\t"
            f"{NULL}\t{NULL}\t"
            f"{stamp}\t{stamp}\t{encounter_id}\t{stamp}\t\n"
        )
        return line.line_id if chosen_now else None

    def _draw(
        self,
        encounter_id: str,
        place: Place,
        line: "_Line",
        hold: tuple[str, int] | None,
        amount: int,
        key: str,
        reference: str,
        at: datetime,
    ) -> date:
        """``credit_draw`` and ``credit_draw_record``; a draw due before today was repaid."""
        captured = 0
        if hold is not None:
            hold_id, held = hold
            captured = min(amount, held)
            legs = [(line.capacity, captured), (line.drawn, -captured)]
            self._post(
                ledger=Ledger.CREDIT,
                kind=Transaction.Kind.HOLD_POST,
                legs=legs,
                reference=f"credit-line:{line.line_id}",
                description="",
                at=at,
                key=f"{key}:line",
                request=ledger_services._request_hash("hold_post", hold=hold_id, amount=captured),
                hold=hold_id,
                released=(line.capacity, line.drawn, held),
            )
            line.available += held - captured
            self.holds[hold_id] = ("posted", at)
        excess = amount - captured
        if excess:
            legs = [(line.capacity, excess), (line.drawn, -excess)]
            self._post(
                ledger=Ledger.CREDIT,
                kind=Transaction.Kind.TRANSFER,
                legs=legs,
                reference=reference,
                description="",
                at=at,
                key=f"{key}:draw",
            )
            line.available -= excess
        settled_on = timezone.localdate(at)
        due = settled_on + timedelta(days=GRACE_DAYS)
        receivable_id = self._uuid4()
        code = f"DR{encounter_id.replace('-', '')[:12].upper()}"
        stamp = _ts(at)
        repaid = due < self.today
        self.out["settlement_receivable"].add(
            f"{receivable_id}\t{code}\t{amount}\t{0 if repaid else amount}\t{due.isoformat()}\t"
            f"{'repaid' if repaid else 'open'}\t{stamp}\t{stamp}\t{line.line_id}\t{encounter_id}\t"
            f"{line.partner_id}\n"
        )
        self.out["settlement_creditmovement"].add(
            f"{self._id('settlement_creditmovement')}\t{code}\tdraw\t{amount}\t"
            f"{settled_on.isoformat()}\t{stamp}\t{line.partner_id}\t{receivable_id}\t"
            f"{place.institution.pk}\n"
        )
        if repaid:
            paid = at + timedelta(days=self.rng.uniform(1, GRACE_DAYS - 1))
            bank_txn = f"SB{receivable_id.replace('-', '')[:24].upper()}"
            self.out["settlement_repayment"].add(
                f"{self._id('settlement_repayment')}\t{amount}\t{bank_txn}\t{_ts(paid)}\t"
                f"{_fingerprint(receivable_id, amount, paid)}\t{_ts(paid)}\t"
                f"{line.partner_id}\t{receivable_id}\t0\trepaid\n"
            )
            restore = f"receivable:{code}"
            legs = [(line.drawn, amount), (line.capacity, -amount)]
            self._post(
                ledger=Ledger.CREDIT,
                kind=Transaction.Kind.TRANSFER,
                legs=legs,
                reference=restore,
                description="",
                at=paid,
                key=f"repayment:{line.partner_id}:{bank_txn}:restore",
            )
            line.available += amount
        return due

    def _receipt(
        self, encounter_id: str, place: Place, at: datetime, figures: dict[str, Any]
    ) -> str:
        """``receipt_issue``: the e-receipt's number, content and verification code."""
        day = timezone.localdate(at)
        turn = self.receipts.get((place.institution.pk, day), 0) + 1
        self.receipts[(place.institution.pk, day)] = turn
        number = f"{place.institution.code}{day:%Y%m%d}{turn:06d}"
        content = {
            "encounter": encounter_id,
            "institution": place.institution.name,
            **figures,
        }
        body = json.dumps(content, ensure_ascii=False)
        self.out["settlement_receipt"].add(
            f"{self._id('settlement_receipt')}\t{number}\t1\t{body}\t"
            f"{verification_code(number, content)}\t{_ts(at)}\t{encounter_id}\t{NULL}\n"
        )
        return number

    def _hold_row(self, hold_id: str) -> None:
        status, resolved = self.holds.pop(hold_id)
        start, middle, end = self.hold_rows.pop(hold_id)
        self.out["ledger_hold"].add(
            f"{start}{status}{middle}{NULL if resolved is None else _ts(resolved)}{end}"
        )

    @staticmethod
    def _files(folder: Path, chunk: int) -> dict[str, TableOut]:
        paths = {name: folder / f"{name}.{chunk}.copy" for name in TABLES}
        return {
            name: TableOut(name, columns, paths[name], _open(paths[name]))
            for name, columns in TABLES.items()
        }

    def rotate(self) -> list[TableOut]:
        """Close the files written so far (those with rows, for loading) and start new ones."""
        done = []
        for table in self.out.values():
            table.flush()
            table.handle.close()
            if table.rows:
                done.append(table)
            else:
                table.path.unlink()
        self.chunk += 1
        self.out = self._files(self.folder, self.chunk)
        return done


@dataclass
class _Line:
    line_id: str
    partner_id: int
    capacity: int
    drawn: int
    available: int


def _open(path: Path) -> TextIO:
    return path.open("w", encoding="utf-8", newline="\n")


def _transfer_hash(ordered_legs: str, reference: str, description: str) -> str:
    """The request hash ``transaction_post`` records with its key: ``ledger.services``'
    ``_request_hash`` written out for these values (``ordered_legs`` is the JSON of the sorted
    ``[account, amount]`` pairs; references and descriptions are ASCII without quotes)."""
    payload = (
        f'{{"description":"{description}","legs":{ordered_legs},"op":"transaction_post",'
        f'"reference":"{reference}"}}'
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def _line_counts(rng: random.Random, inpatient: list[bool], total: int) -> list[int]:
    """Charge lines per stay summing to ``total``: a few for a visit, more for a stay, and
    some long stays with many."""
    if total < len(inpatient):
        raise ValueError("at least one charge line per encounter is needed")
    weights = [
        (rng.expovariate(1 / 20) + (60 if rng.random() < 0.03 else 0) + 3)
        if stay
        else rng.expovariate(1 / 4) + 1
        for stay in inpatient
    ]
    scale = total / sum(weights)
    counts = [max(1, int(weight * scale)) for weight in weights]
    left = total - sum(counts)
    while left:
        index = rng.randrange(len(counts))
        if left > 0:
            counts[index] += 1
            left -= 1
        elif counts[index] > 1:
            counts[index] -= 1
            left += 1
    return counts


# --- set-up through the services ------------------------------------------------------------


def setup(sizes: Sizes) -> tuple[list[Place], list[Bank]]:
    """Institutions, departments, banks and house accounts, through the services."""
    rng = random.Random(sizes.seed)  # noqa: S311 - benchmark data
    hospitals = max(1, round(sizes.institutions * HOSPITAL_SHARE))
    banks = []
    for name, _ in BANKS:
        full = f"{PARTNER_PREFIX} {name}"
        partner = Partner.objects.filter(name=full).first()
        if partner is None:
            partner, _, _ = partner_create(actor=ACTOR, name=full, grace_days=GRACE_DAYS)
        banks.append(Bank(partner, partner_pool(partner).pk))
    places = []
    for number in range(1, sizes.institutions + 1):
        hospital = number <= hospitals
        institution = institution_ensure(
            actor=ACTOR,
            code=f"{INSTITUTION_PREFIX}{number:03d}",
            name=(
                f"厦门市第{number}医院"
                if hospital
                else f"{rng.choice('思明湖里集美海沧同安翔安')}社区卫生服务中心{number}"
            ),
            kind=Institution.Kind.HOSPITAL if hospital else Institution.Kind.COMMUNITY,
        )
        inpatient, outpatient = [], 0
        for code, name, deposit in HOSPITAL_DEPARTMENTS if hospital else COMMUNITY_DEPARTMENTS:
            department_ensure(
                actor=ACTOR,
                institution=institution,
                code=code,
                name=name,
                default_deposit=deposit,
            )
            department = Department.objects.get(institution=institution, code=code)
            if deposit:
                inpatient.append((department.pk, deposit))
            else:
                outpatient = department.pk
        places.append(
            Place(
                institution=institution,
                inpatient=inpatient,
                outpatient=outpatient,
                revenue={c: house.revenue(institution, c).pk for c in CATEGORIES},
                insurer=house.insurer_receivable(institution).pk,
                bank={
                    b.partner.pk: house.bank_receivable(institution, b.partner).pk for b in banks
                },
                clearing={c: house.clearing(institution, c).pk for c in CHANNELS},
            )
        )
    return places, banks


# --- the load -------------------------------------------------------------------------------


@dataclass
class BuildReport:
    seconds: float
    generate_seconds: float
    rows: dict[str, tuple[int, float]]  # table -> (rows, seconds of COPY)
    constraints_seconds: float


def build(sizes: Sizes, log: Callable[[str], None]) -> BuildReport:
    """Generate and load the data set (see the module docstring); ``log`` reports progress.

    Rows are generated in chunks of 50,000 citizens or stays; while Python generates a chunk,
    a thread loads the one before with ``COPY`` on the same connection (PostgreSQL works on
    the other core), all in the one database transaction."""
    started = time.perf_counter()
    places, banks = setup(sizes)
    ledger_services.chain_seal()  # anything posted before joins the chain first
    for value in Ledger.values:
        ChainHead.objects.get_or_create(ledger=value)
    log(f"  set-up through the services took {time.perf_counter() - started:.1f} s")
    with tempfile.TemporaryDirectory(prefix="scale_bench_") as folder, transaction.atomic():
        with connection.cursor() as wrapper:
            cursor = wrapper.cursor
            cursor.execute(
                "LOCK TABLE ledger_chainhead, ledger_chainqueue, ledger_balanceslot"
                " IN EXCLUSIVE MODE"
            )
            heads = {
                ledger: (seq, digest)
                for ledger, seq, digest in _rows(
                    cursor, "SELECT ledger, seq, hash FROM ledger_chainhead"
                )
            }
            starts = {}
            for table in NUMBERED:
                cursor.execute(
                    sql.SQL("SELECT COALESCE(MAX(id), 0) FROM {}").format(sql.Identifier(table))
                )
                starts[table] = int(cursor.fetchone()[0])
            aside = _set_aside(cursor)
        generator = Generator(sizes, Path(folder), starts, heads, places, banks, log)
        raw = connection.connection
        assert raw is not None  # noqa: S101 - the cursor above connected
        loader = _Loader(raw, log)
        loader.start()
        try:
            began = time.perf_counter()
            for done in generator.citizens():
                loader.put(generator.rotate())
                log(f"  generated {done:,} citizens with lines ({_rate(done, began)})")
            stays_began = time.perf_counter()
            for done in generator.stays():
                loader.put(generator.rotate())
                log(f"  generated {done:,} encounters ({_rate(done, stays_began)})")
            loader.put(generator.rotate())
            generated = time.perf_counter() - began
            log(f"  generation took {generated:.1f} s; waiting for the last COPY")
        finally:
            loader.put(None)
            loader.join()
        if loader.error is not None:
            raise loader.error
        for table, (rows, seconds) in loader.totals.items():
            log(f"  COPY {table}: {rows:,} rows in {seconds:.1f} s ({rows / seconds:,.0f}/s)")
        with connection.cursor() as wrapper:
            constraints = _restore(wrapper.cursor, aside, log)
        _finish_ledger(generator)
    log("  ANALYZE")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return BuildReport(time.perf_counter() - started, generated, loader.totals, constraints)


def _rows(cursor: Any, query: str) -> list[tuple[Any, ...]]:
    cursor.execute(query)
    return list(cursor.fetchall())


def _rate(done: int, began: float) -> str:
    return f"{done / max(time.perf_counter() - began, 1e-9):,.0f}/s"


class _Loader(threading.Thread):
    """Loads chunks of table files with ``COPY``, in order, on the build's connection (the
    main thread does not use it meanwhile)."""

    def __init__(self, raw: Any, log: Callable[[str], None]) -> None:
        super().__init__(name="scale_bench COPY", daemon=True)
        self.raw = raw
        self.log = log
        self.chunks: queue.Queue[list[TableOut] | None] = queue.Queue(maxsize=3)
        self.totals: dict[str, tuple[int, float]] = {}
        self.error: BaseException | None = None

    def put(self, chunk: list[TableOut] | None) -> None:
        if self.error is not None and chunk is not None:
            raise self.error
        self.chunks.put(chunk)

    def run(self) -> None:
        while (chunk := self.chunks.get()) is not None:
            for out in chunk:
                try:
                    if self.error is None:
                        self._copy(out)
                except BaseException as error:  # reported by the main thread
                    self.error = error
                finally:
                    out.path.unlink(missing_ok=True)

    def _copy(self, out: TableOut) -> None:
        began = time.perf_counter()
        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.Identifier(out.name), sql.SQL(", ").join(map(sql.Identifier, out.columns))
        )
        with (
            self.raw.cursor() as cursor,
            cursor.copy(statement) as copy,
            out.path.open("rb") as source,
        ):
            while block := source.read(8 << 20):
                copy.write(block)
        rows, seconds = self.totals.get(out.name, (0, 0.0))
        self.totals[out.name] = (rows + out.rows, seconds + time.perf_counter() - began)


@dataclass
class _SetAside:
    """What the load set aside, to restore: foreign keys, key and unique constraints, and
    indexes of the loaded tables (each as PostgreSQL prints its definition)."""

    foreign_keys: list[tuple[str, str, str]]
    constraints: list[tuple[str, str, str]]
    indexes: list[tuple[str, str]]


def _set_aside(cursor: Any) -> _SetAside:
    """Drop the loaded tables' foreign keys, constraints with an index and indexes, and disable
    their triggers: PostgreSQL then builds each index once, sorted, after the load, instead of
    inserting into it row by row. An index a table not loaded depends on (the target of its
    foreign key) stays."""
    tables = list(TABLES)
    cursor.execute(
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)"
        " FROM pg_constraint WHERE contype = 'f' AND conrelid = ANY(%s::regclass[])",
        [tables],
    )
    foreign_keys = list(cursor.fetchall())
    cursor.execute(
        "SELECT t.relname, c.conname, pg_get_constraintdef(c.oid), x.relname,"
        " pg_get_indexdef(i.indexrelid)"
        " FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid"
        " JOIN pg_class x ON x.oid = i.indexrelid"
        " LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid"
        " AND c.contype IN ('p', 'u', 'x')"
        " WHERE i.indrelid = ANY(%s::regclass[]) AND i.indexrelid NOT IN ("
        "  SELECT f.conindid FROM pg_constraint f WHERE f.contype = 'f'"
        "  AND f.confrelid = ANY(%s::regclass[]) AND NOT f.conrelid = ANY(%s::regclass[]))",
        [tables, tables, tables],
    )
    indexed = list(cursor.fetchall())
    for table, name, _ in foreign_keys:
        cursor.execute(
            sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                sql.Identifier(table), sql.Identifier(name)
            )
        )
    aside = _SetAside(foreign_keys, [], [])
    for table, constraint, definition, index, index_definition in indexed:
        if constraint is not None:
            cursor.execute(
                sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                    sql.Identifier(table), sql.Identifier(constraint)
                )
            )
            aside.constraints.append((table, constraint, definition))
        else:
            cursor.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(index)))
            aside.indexes.append((index, index_definition))
    for table in tables:
        cursor.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER USER").format(sql.Identifier(table)))
    return aside


def _restore(cursor: Any, aside: _SetAside, log: Callable[[str], None]) -> float:
    """Enable the triggers again, build the indexes and add the constraints back (PostgreSQL
    checks every row against each key, unique constraint and foreign key)."""
    began = time.perf_counter()
    cursor.execute("SET LOCAL maintenance_work_mem = '512MB'")
    for table in TABLES:
        cursor.execute(sql.SQL("ALTER TABLE {} ENABLE TRIGGER USER").format(sql.Identifier(table)))
    for table, name, definition in aside.constraints + aside.foreign_keys:  # keys, then FKs
        cursor.execute(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} ").format(
                sql.Identifier(table), sql.Identifier(name)
            )
            + sql.SQL(definition)  # as PostgreSQL printed it
        )
    for _, definition in aside.indexes:
        cursor.execute(sql.SQL(definition))
    for table in NUMBERED:
        cursor.execute(
            sql.SQL(
                "SELECT setval(pg_get_serial_sequence(%s, 'id'), GREATEST(MAX(id), 1)) FROM {}"
            ).format(sql.Identifier(table)),
            [table],
        )
    seconds = time.perf_counter() - began
    log(
        f"  {len(aside.constraints)} keys and unique constraints, {len(aside.indexes)} indexes"
        f" built and {len(aside.foreign_keys)} foreign keys checked in {seconds:.1f} s"
    )
    return seconds


def _finish_ledger(generator: Generator) -> None:
    """The busy accounts' slots and each chain's head, after what was loaded."""
    hot = sorted(generator.hot.items())
    with connection.cursor() as cursor:
        cursor.cursor.execute(
            "UPDATE ledger_balanceslot s SET debits_posted = s.debits_posted + v.dp,"
            " credits_posted = s.credits_posted + v.cp,"
            " debits_pending = s.debits_pending + v.dq,"
            " credits_pending = s.credits_pending + v.cq"
            " FROM unnest(%s::bigint[], %s::int[], %s::bigint[], %s::bigint[], %s::bigint[],"
            " %s::bigint[]) AS v(account_id, slot, dp, cp, dq, cq)"
            " WHERE s.account_id = v.account_id AND s.slot = v.slot",
            [
                [account for (account, _), _ in hot],
                [slot for (_, slot), _ in hot],
                [row[0] for _, row in hot],
                [row[1] for _, row in hot],
                [row[2] for _, row in hot],
                [row[3] for _, row in hot],
            ],
        )
        for ledger, (seq, digest) in generator.heads.items():
            cursor.execute(
                "UPDATE ledger_chainhead SET seq = %s, hash = %s WHERE ledger = %s",
                [seq, digest, ledger],
            )


def bench_places() -> list[Institution]:
    return list(Institution.objects.filter(code__startswith=INSTITUTION_PREFIX).order_by("code"))


def house_account_ids() -> set[int]:
    return set(Account.objects.filter(code__startswith="money:inst:").values_list("pk", flat=True))
