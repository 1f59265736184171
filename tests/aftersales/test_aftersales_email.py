"""The buyer hears of their case by e-mail (a real SMTP server on loopback) when the shop subscribes the e-mail
channel to `aftersales.*`: the report taken, and the case closed with its outcome; nothing internal."""

from __future__ import annotations

import asyncio
import time
from email.header import decode_header, make_header

import pytest

from fulfil.aftersales.model import Problem, Report
from fulfil.config import Config
from fulfil.crypto import CardCipher
from fulfil.notify import Dispatcher, build_routes
from fulfil.storage import Store
from tests.aftersales.askit import make_shop
from tests.smtpkit import Inbox


@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_the_buyer_is_told_the_case_was_taken_and_how_it_closed(
    store: Store, cipher: CardCipher, smtp: tuple[Inbox, int], lang: str
) -> None:
    inbox, port = smtp
    settings = {"host": "127.0.0.1", "port": port, "starttls": False, "from": "shop@example.com", "lang": lang}
    notify = Config.model_validate({"notify": {"email": {**settings, "events": ["aftersales.*"]}}}).notify
    shop = make_shop(store, cipher)
    await shop.delivered_order("o-1", contact="buyer@example.com")
    store.notify_routes = build_routes(notify)
    config = shop.config.model_copy(update={"notify": notify})
    found = await store.order_for_proof("o-1")
    assert found is not None
    case = (await shop.desk.report(found[0], found[1], Report(Problem.NOT_RECEIVED), reporter="buyer")).case
    dispatcher = Dispatcher(store, lambda: config, owner="t", poll_interval=0.05, config_dir=None)
    stopping = asyncio.Event()
    task = asyncio.create_task(dispatcher.serve(stopping))
    deadline = time.monotonic() + 10
    while len(inbox.messages) < 2:
        assert time.monotonic() < deadline, await store.outbox_rows()
        await asyncio.sleep(0.05)
    stopping.set()
    await task
    subjects = sorted(str(make_header(decode_header(str(m["Subject"])))) for m in inbox.messages)
    assert all(case.case_no in s and "o-1" in s for s in subjects), subjects
    assert {m["To"] for m in inbox.messages} == {"buyer@example.com"}
    bodies = " ".join(
        part.get_payload(decode=True).decode()
        for m in inbox.messages
        for part in m.walk()
        if part.get_content_maintype() == "text"
    )
    assert "delivered: the delivery notification is sent again" not in bodies  # L1's reason stays internal
    assert ("confirmed" in bodies) if lang == "en" else ("已确认发货" in bodies)
