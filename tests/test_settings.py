"""Configuration comes from the environment; production refuses development and weak keys."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET = secrets.token_urlsafe(50)
FIELD_KEY = secrets.token_urlsafe(32)


def load_production(code: str = "print('started')", **env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "FIELD_", "SECURE_"))
    }
    clean.update(env, DJANGO_SETTINGS_MODULE="config.settings.production")
    return subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
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
        ({"DJANGO_SECRET_KEY": "short-but-random-" + secrets.token_hex(8)}, "DJANGO_SECRET_KEY"),
        ({"DJANGO_SECRET_KEY": "x" * 60, "FIELD_ENCRYPTION_KEY": FIELD_KEY}, "DJANGO_SECRET_KEY"),
        ({"DJANGO_SECRET_KEY": SECRET}, "FIELD_ENCRYPTION_KEY"),
        ({"DJANGO_SECRET_KEY": SECRET, "FIELD_ENCRYPTION_KEY": ""}, "FIELD_ENCRYPTION_KEY"),
        ({"DJANGO_SECRET_KEY": SECRET, "FIELD_ENCRYPTION_KEY": "a"}, "FIELD_ENCRYPTION_KEY"),
        ({"DJANGO_SECRET_KEY": SECRET, "FIELD_ENCRYPTION_KEY": ","}, "FIELD_ENCRYPTION_KEY"),
        ({"DJANGO_SECRET_KEY": SECRET, "FIELD_ENCRYPTION_KEY": "x" * 50}, "FIELD_ENCRYPTION_KEY"),
        (
            {"DJANGO_SECRET_KEY": SECRET, "FIELD_ENCRYPTION_KEY": "ab" * 30},
            "FIELD_ENCRYPTION_KEY",
        ),
        (
            {"DJANGO_SECRET_KEY": SECRET, "FIELD_ENCRYPTION_KEY": f"{FIELD_KEY},"},
            "FIELD_ENCRYPTION_KEY",
        ),
        (
            {"DJANGO_SECRET_KEY": SECRET, "FIELD_ENCRYPTION_KEY": FIELD_KEY, "DJANGO_DEBUG": "1"},
            "DJANGO_DEBUG",
        ),
    ],
)
def test_production_refuses_development_or_weak_settings(env, message):
    result = load_production(**env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert message in result.stderr


def test_production_starts_with_real_keys_and_secure_defaults():
    result = load_production(
        "from django.conf import settings as s; "
        "print(s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS, s.SECURE_HSTS_INCLUDE_SUBDOMAINS, "
        "s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE)",
        DJANGO_SECRET_KEY=SECRET,
        # An older key after the first still decrypts while a rotation runs.
        FIELD_ENCRYPTION_KEY=f"{FIELD_KEY},{secrets.token_hex(16)}",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "31536000", "False", "True", "True"]


def test_production_tls_settings_come_from_the_environment():
    result = load_production(
        "from django.conf import settings as s; "
        "print(s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS, s.SECURE_HSTS_INCLUDE_SUBDOMAINS)",
        DJANGO_SECRET_KEY=SECRET,
        FIELD_ENCRYPTION_KEY=FIELD_KEY,
        DJANGO_SECURE_SSL_REDIRECT="0",
        SECURE_HSTS_SECONDS="600",
        SECURE_HSTS_INCLUDE_SUBDOMAINS="1",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "600", "True"]


def test_check_deploy_passes_under_production_settings():
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "FIELD_"))},
            "DJANGO_SETTINGS_MODULE": "config.settings.production",
            "DJANGO_SECRET_KEY": SECRET,
            "FIELD_ENCRYPTION_KEY": FIELD_KEY,
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_postgresql_binds_on_the_server_and_keeps_the_urls_options():
    """Parameters go to PostgreSQL apart from the text (so repeated statements are prepared),
    and the options the URL gives (an application name, TLS) are kept beside that."""
    result = load_production(
        "from django.conf import settings as s; o = s.DATABASES['default']['OPTIONS']; "
        "print(o.get('server_side_binding'), o.get('prepare_threshold'), o.get('sslmode'), "
        "o.get('application_name'))",
        DJANGO_SECRET_KEY=SECRET,
        FIELD_ENCRYPTION_KEY=FIELD_KEY,
        DATABASE_URL="postgres://ledger@db.internal:5432/ledger?sslmode=require&application_name=web",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "5", "require", "web"]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"DATABASE_PREPARE_THRESHOLD": "off"}, ["True", "None"]),
        ({"DATABASE_PREPARE_THRESHOLD": "10"}, ["True", "10"]),
        ({"DATABASE_SERVER_SIDE_BINDING": "0"}, ["False", "5"]),
    ],
)
def test_postgresql_preparing_and_binding_can_be_turned_off(env, expected):
    result = load_production(
        "from django.conf import settings as s; o = s.DATABASES['default']['OPTIONS']; "
        "print(o['server_side_binding'], o['prepare_threshold'])",
        DJANGO_SECRET_KEY=SECRET,
        FIELD_ENCRYPTION_KEY=FIELD_KEY,
        DATABASE_URL="postgres://ledger@db.internal:5432/ledger",
        **env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == expected


def test_a_prepare_threshold_that_is_not_a_number_is_refused():
    result = load_production(
        DJANGO_SECRET_KEY=SECRET,
        FIELD_ENCRYPTION_KEY=FIELD_KEY,
        DATABASE_URL="postgres://ledger@db.internal:5432/ledger",
        DATABASE_PREPARE_THRESHOLD="sometimes",
    )
    assert result.returncode != 0
    assert "DATABASE_PREPARE_THRESHOLD" in result.stderr
