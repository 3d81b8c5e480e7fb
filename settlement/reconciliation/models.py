"""Reconciliation's rows: batches, their results, the items a bank statement paid and the
statement files themselves.

They belong to the settlement app (``settlement.models`` imports this module so that Django
finds them): their tables and migrations are the app's, under the names they always had.
"""

import uuid

from django.db import models
from django.utils import timezone

from accounts.models import Institution, Partner


class ReconBatch(models.Model):
    """A reconciliation (对账) run: a bank statement file, the insurer's day, or the ledger check.

    A statement file is recognised by its hash: uploading it again returns the same batch.
    A batch's results are written in one transaction with its status ``done``, so a worker
    killed mid-batch leaves nothing behind, and the next run does the batch again from the file.
    The file is kept in the database (``ReconFileChunk``), not on the disk of the host that took
    the upload, so that a worker on any host can run the batch.
    ``progress_done`` counts the statement lines read so far.
    """

    class Source(models.TextChoices):
        BANK_STATEMENT = "bank_statement", "bank statement"
        INSURER = "insurer", "insurer daily list"
        LEDGER = "ledger", "ledger integrity check"

    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        DONE = "done", "done"
        FAILED = "failed", "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    source = models.CharField(max_length=16, choices=Source.choices)
    partner = models.ForeignKey(
        Partner, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # Whose batch: a bank statement an institution's finance uploaded, or the insurer's day of
    # one institution. The ledger's checks read the whole ledger and belong to none.
    institution = models.ForeignKey(
        Institution, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    period_start = models.DateField(null=True, blank=True)
    period_end = models.DateField(null=True, blank=True)
    fingerprint = models.CharField(max_length=100)
    file_name = models.CharField(max_length=200, blank=True)
    file_format = models.CharField(max_length=16, blank=True)
    # The statement file itself is kept in the database, as ReconFileChunk rows of this size
    # in all: what every web and worker host reaches.
    file_size = models.BigIntegerField(default=0)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED)
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    # The file has the plain CSV shape (statements.scan_plain_csv): PostgreSQL may COPY it.
    plain_csv = models.BooleanField(default=False)
    counts = models.JSONField(default=dict)
    totals = models.JSONField(default=dict)
    error = models.TextField(blank=True)
    created_by = models.CharField(max_length=120)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["source", "fingerprint"], name="recon_batch_once_per_input"
            ),
            # One run of the ledger's checks at a time: each reads the whole ledger.
            models.UniqueConstraint(
                fields=["source"],
                condition=models.Q(source="ledger", status__in=["queued", "running"]),
                name="recon_one_ledger_check_at_a_time",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.source} {self.id} {self.status}"


class ReconItem(models.Model):
    """One result of a batch: an exception for finance to resolve, an item missing or covered by
    a daily line, or a matched line of the insurer's list or a matched daily line. (A bank
    statement's matched item lines are recorded as ReconPaid instead.)"""

    class Kind(models.TextChoices):
        MATCHED = "matched", "matched"
        # A draw paid inside a matched daily net line: not a statement line of its own.
        COVERED = "covered", "paid in a daily net"
        AMOUNT_MISMATCH = "amount_mismatch", "amount mismatch"
        UNKNOWN_REFERENCE = "unknown_reference", "unknown reference"
        DUPLICATE = "duplicate", "duplicate"
        MISSING = "missing", "missing"
        PROBLEM = "problem", "integrity problem"

    # A batch writes its items in bulk, up to millions of rows in one statement, and they are
    # written only by the reconciliation service for a batch it holds, and deleted with it
    # (Django cascades). A database foreign key would check every row again at commit, which
    # took as long as writing the rows, so the key is not declared to the database.
    batch = models.ForeignKey(
        ReconBatch,
        on_delete=models.CASCADE,
        related_name="items",
        db_constraint=False,
        db_index=False,  # recon_item_kind leads with the batch
    )
    position = models.PositiveIntegerField()  # statement line; 0 for an item not on it
    kind = models.CharField(max_length=20, choices=Kind.choices)
    reference = models.CharField(max_length=64, blank=True)
    external_id = models.CharField(max_length=64, blank=True)
    amount = models.BigIntegerField(null=True, blank=True)
    expected = models.BigIntegerField(null=True, blank=True)
    detail = models.CharField(max_length=500, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=120, blank=True)
    resolution_comment = models.TextField(blank=True)
    adjustment_transaction_id = models.UUIDField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["batch", "kind"], name="recon_item_kind"),
            # Was this draw paid before? (an equality lookup: no LIKE index beside it)
            models.Index(fields=["reference"], name="recon_item_reference"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.reference}"


class ReconPaid(models.Model):
    """The items (draws and reversals) a bank statement batch paid, by lines of their own or
    inside daily net lines, as bitmaps: a row holds the items whose ids share ``block`` (the id
    divided by 32) and has bit ``id % 32`` of ``bits`` set for each one paid. Written with the
    batch's results, one row per block it paid items in.

    Item ids are shared by all banks, so a row holds as many of a bank's items as its ids are
    dense: a million paid items of a bank that draws alone are some 31,000 rows, at worst (its
    draws interleaved with many others') one row per item. Writing them takes a tenth of the
    time a row and an index entry per item would, and "was this item paid?" is one index
    lookup (the block: a row per batch that paid items in it, for any bank) and a test of one
    bit. A matched line of a statement is recorded only here (the line itself is in the batch's
    file); its exceptions, and the items a daily line covers, are ``ReconItem`` rows. Batches of
    one bank are classified one at a time and never pay an item paid before (such a line is a
    duplicate), so an item's bit is set in one batch's row at most.
    """

    # Items per row, a power of two: bits of a bigint clear of its sign. Part of the stored
    # format (migration 0008 writes it as / 32): changing it needs a data migration.
    BLOCK = 32

    pk = models.CompositePrimaryKey("block", "batch")
    block = models.BigIntegerField()
    # Written in bulk, for a batch the service holds: no database key, which would check every
    # row again (see ReconItem.batch). Deleting a batch takes back what it paid.
    batch = models.ForeignKey(
        ReconBatch,
        on_delete=models.CASCADE,
        related_name="paid",
        db_constraint=False,
    )
    bits = models.BigIntegerField()

    def __str__(self) -> str:
        return f"{self.block}: {self.bits:032b}"


class ReconFileChunk(models.Model):
    """A piece of a bank statement batch's file, in order by ``seq``: the file is kept in the
    database, which every web and worker host reaches, and not on the disk of the host that
    took the upload. The pieces are written in the upload's transaction, with the batch, and
    read back one at a time as a stream (``settlement.reconciliation.files``), so that no
    process holds a whole file (up to ``RECON_UPLOAD_MAX_MB``) in memory. They go with their
    batch.
    """

    pk = models.CompositePrimaryKey("batch", "seq")
    batch = models.ForeignKey(
        ReconBatch,
        on_delete=models.CASCADE,
        related_name="+",
        db_index=False,  # the primary key leads with the batch
    )
    seq = models.PositiveIntegerField()
    data = models.BinaryField()

    def __str__(self) -> str:
        return f"{self.batch_id} #{self.seq}"
