"""Configuration comes from the environment; production refuses development keys."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parent.parent
STRONG = "x" * 50


def load_production(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "FIELD_"))}
    clean.update(env, DJANGO_SETTINGS_MODULE="config.settings.production")
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); print('started')"],
        cwd=BASE_DIR,
        env=clean,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "DJANGO_SECRET_KEY"),
        ({"DJANGO_SECRET_KEY": STRONG}, "FIELD_ENCRYPTION_KEY"),
        (
            {"DJANGO_SECRET_KEY": STRONG, "FIELD_ENCRYPTION_KEY": STRONG, "DJANGO_DEBUG": "1"},
            "DJANGO_DEBUG",
        ),
    ],
)
def test_production_refuses_development_settings(env, message):
    result = load_production(**env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert message in result.stderr


def test_production_starts_with_real_keys():
    result = load_production(DJANGO_SECRET_KEY=STRONG, FIELD_ENCRYPTION_KEY=STRONG)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "started"
