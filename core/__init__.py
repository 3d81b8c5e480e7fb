"""What every app here shares and none of them owns: money (``core.money``), requests that take
effect once (``core.idempotency``, with its table in ``core.models``) and database connection
helpers (``core.db``).

It imports nothing from ``ledger``, ``accounts`` or ``settlement``, which may all import it;
``core.money`` imports not even Django (the insurer simulator, a plain program, uses it).
"""
