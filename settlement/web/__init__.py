"""The pages people use: the cashier console, the patient portal and the finance desk.

Server-rendered Django templates with a little plain JavaScript; Simplified Chinese first,
English second (a switch on every page). Views are thin: they call the same services and
selectors as the API.
"""
