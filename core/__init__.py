"""What every app here shares and none of them owns: money (``core.money``), database
connection helpers (``core.db``), the domain errors' base (``core.errors``) and the API's error
shape, its handler and edge (``core.api_errors``, ``core.api_edge``).

A plain Python package: no models, so not an installed app; it imports nothing from ``ledger``,
``accounts`` or ``settlement``, which may all import it.
"""
