"""Write services of the settlement app, one module per use-case group."""
