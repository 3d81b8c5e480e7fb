"""Encounters, charges, the insurer, settlement, repayment and reconciliation (issues 4-5)."""
