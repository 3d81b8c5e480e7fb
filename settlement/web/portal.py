"""The portal pages (filled in area by area)."""

from django.urls import URLPattern

urlpatterns: list[URLPattern] = []
