"""What every app here shares and none of them owns: money (``core.money``), requests that take
effect once (``core.idempotency``, with its table in ``core.models``), database connection
helpers (``core.db``), the domain errors' base (``core.errors``) and the API's error shape, its
handler and edge (``core.api_errors``, ``core.api_edge``).

It imports nothing from ``ledger``, ``accounts`` or ``settlement``, which may all import it;
``core.money`` imports not even Django (the insurer simulator, a plain program, uses it).
"""
