"""django-hordak as the peer of ``manage.py ledger_bench --peer hordak``.

hordak is a development requirement only, so it never enters the project's settings: the bench
runs ``python -m tests.ledger.peer_hordak.run`` in a subprocess with the tiny settings module
here, against a database of its own.
"""
