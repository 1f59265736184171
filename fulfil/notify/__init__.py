"""Notifications: the transactional outbox's dispatcher, Standard Webhooks, buyer e-mail, delay warnings and
operator alerts (WeCom, Telegram, webhooks).

What others use: `build_routes` (the store writes outbox rows for the types it names), `Dispatcher` (the
daemon runs it beside the worker), `EVENT_TYPES`.
"""

from __future__ import annotations

from fulfil.config import EVENT_TYPES
from fulfil.notify.dispatcher import Dispatcher
from fulfil.notify.events import Routes, build_routes, mask_contact, mask_url

__all__ = ["EVENT_TYPES", "Dispatcher", "Routes", "build_routes", "mask_contact", "mask_url"]
