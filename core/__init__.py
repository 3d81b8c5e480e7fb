"""What every app here shares and none of them owns: money (``core.money``) and database
connection helpers (``core.db``).

A plain Python package: no models, so not an installed app; it imports nothing from ``ledger``,
``accounts`` or ``settlement``, which may all import it.
"""
