"""Reconciliation (对账): bank statements, the insurer's daily list and the ledger's own checks.

A wing of the settlement app: its models keep the app label ``settlement`` (and their tables),
and it may use settlement's models and services, accounts, the ledger and core; nothing outside
it imports it but settlement's URL confs, task registration and the finance desk's menu.
"""
