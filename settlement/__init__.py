"""Encounters, charges, the insurer, settlement, repayment and reconciliation."""
