"""Celery workers: `celery -A workers worker` (or `growpanel-backfill worker`)."""

from workers.celery_app import app

__all__ = ["app"]
