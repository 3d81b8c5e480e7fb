"""Reconciliation (对账): bank statements, the insurer's daily list and the ledger's own checks.

A wing of the settlement app: its models keep the app label ``settlement`` (and their tables),
and it may use settlement's models and services, accounts, the ledger and core. Of the rest of
settlement only ``models`` (so that Django finds its models), ``tasks`` (so that the worker
registers its tasks), the URL confs and its management commands import it.
"""
