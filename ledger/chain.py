"""The hash chain's canonical form, shared by the sealing service and the verifier."""

import hashlib
import json
from collections.abc import Iterable
from datetime import UTC

from .models import Transaction


def transaction_bytes(txn: Transaction, entries: Iterable[tuple[int, int]]) -> bytes:
    """What a transaction contributes to the chain: its fields and its ``(account, amount)``
    entries, sorted, so the order the rows come back in does not matter."""
    body = [
        str(txn.pk),
        txn.ledger,
        txn.kind,
        str(txn.hold_id) if txn.hold_id else "",
        str(txn.reverses_id) if txn.reverses_id else "",
        txn.reference,
        txn.description,
        txn.created_at.astimezone(UTC).isoformat(),
        sorted([account_id, amount] for account_id, amount in entries),
    ]
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def link_hash(previous_hash: str, content: bytes) -> str:
    return hashlib.sha256(previous_hash.encode() + b"\n" + content).hexdigest()
