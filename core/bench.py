"""What the benchmark commands share."""

from django.test.utils import override_settings


def as_in_production() -> override_settings:
    """Settings as a production server has them, for a benchmark's run (``with``): ``DEBUG``
    off. With it on (the local default) Django keeps every query in a log and renders templates
    in debug mode, which a production server does not pay for."""
    return override_settings(DEBUG=False)
