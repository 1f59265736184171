"""The chaos auditor on facts made by hand: it passes clean books and names each broken invariant."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from chaos.audit import Facts, audit, load_facts, log_needles, main, save_facts, scan_logs
from chaos.presets import PRESETS
from chaos.run import schedule

K1, K2, K3 = "AAAAAAAAAAAAAAA1", "AAAAAAAAAAAAAAA2", "AAAAAAAAAAAAAAA3"


def _attempt(number: str, state: str = "succeeded", error_class: str | None = None) -> dict[str, Any]:
    return {"supplier": "fulu", "supplier_order_no": number, "state": state, "error_class": error_class,
            "started_at": "2026-12-01T00:00:00+00:00", "finished_at": "2026-12-01T00:00:01+00:00"}


def _order(ref: str, attempts: list[dict[str, Any]], cards: list[str], status: str = "delivered",
           reason: str | None = None) -> dict[str, Any]:
    return {"ref": ref, "qty": len(cards) or 1, "status": status, "reason": reason,
            "cards": [{"number": None, "password": c} for c in cards], "attempts": attempts, "claims": []}


def _charged(number: str, cards: list[str], invalid: str | None = None) -> dict[str, Any]:
    return {"number": number, "qty": len(cards), "charged": True, "state": "success", "invalid_keys": invalid,
            "cards": [{"number": "", "password": c} for c in cards]}


def _claim(number: str, reason: str) -> dict[str, Any]:
    return {"supplier": "fulu", "supplier_order_no": number, "reason": reason}


def _facts(views: list[dict[str, Any]], ledger: list[dict[str, Any]], claims: list[dict[str, Any]] | None = None,
           **kw: Any) -> Facts:
    return Facts(expected_refs={v["ref"] for v in views}, views=views, claims=claims or [],
                 ledgers={"fulu": {"orders": ledger}}, returned=kw.get("returned", Counter()),
                 held=kw.get("held", Counter()))


def test_clean_books_pass_with_every_category() -> None:
    views = [
        _order("A", [_attempt("N1")], [K1]),
        _order("B", [_attempt("N2", "succeeded", "invalid_key"), _attempt("N3")], [K3]),
        _order("C", [_attempt("N4", "ambiguous", "ambiguous")], [], status="review", reason="ambiguous"),
    ]
    ledger = [_charged("N1", [K1]), _charged("N2", ["bad"], "not_matching"), _charged("N3", [K3]),
              _charged("N4", [K2])]
    verdict = audit(_facts(views, ledger, [_claim("N2", "invalid_key")], held=Counter({"N2": 1})))
    assert verdict.ok, dict(verdict.broken)
    figures = verdict.suppliers["fulu"]
    assert (figures.charged, figures.delivered, figures.claimed, figures.awaiting) == (4, 2, 1, 1)


def test_a_second_purchase_without_a_claim_is_a_double_buy_and_a_lost_unit() -> None:
    views = [_order("A", [_attempt("N1", "sent"), _attempt("N2")], [K2])]
    verdict = audit(_facts(views, [_charged("N1", [K1]), _charged("N2", [K2])]))
    assert set(verdict.broken) == {"no_double_buy", "books", "attempts_closed"}
    assert verdict.suppliers["fulu"].lost == 1


def test_a_key_twice_an_unclaimed_invalid_batch_and_an_open_order_are_named() -> None:
    views = [
        _order("A", [_attempt("N1")], [K1]),
        _order("B", [_attempt("N2")], [K1]),
        _order("C", [], [], status="pending"),
    ]
    ledger = [_charged("N1", [K1]), _charged("N2", [K1], "resold")]
    verdict = audit(_facts(views, ledger))
    assert {"no_key_twice", "invalid_claimed", "ended"} <= set(verdict.broken)


def test_the_schedule_depends_on_the_seed_alone() -> None:
    preset = PRESETS["pg"].sized(kills=20, pg_restarts=2)
    assert schedule(preset, 7) == schedule(preset, 7) != schedule(preset, 8)
    assert sum(step.pg_restart for step in schedule(preset, 7)) == 2


def test_saved_facts_audit_the_same_again(tmp_path: Path) -> None:
    views = [_order("A", [_attempt("N1", "sent"), _attempt("N2")], [K2])]
    facts = _facts(views, [_charged("N1", [K1]), _charged("N2", [K2])])
    save_facts(facts, tmp_path / "facts.json")
    again = audit(load_facts(tmp_path / "facts.json"))
    assert dict(again.broken) == dict(audit(facts).broken)
    assert main([str(tmp_path / "facts.json")]) == 1


def test_log_scan_finds_every_issued_key_and_secret_and_names_file_and_line(tmp_path: Path) -> None:
    ledgers = {"fulu": {"orders": [_charged("F1", [K1]), {**_charged("F2", [K2]), "charged": False}]}}
    needles = log_needles(ledgers, {"FULFIL_CARD_KEY": "c2VjcmV0LWNhcmQta2V5LW1hdGVyaWFs=", "short": "abc"})
    assert needles[K1] == "a card password fulu issued for F1" and K2 in needles  # charged or not
    daemon = tmp_path / "daemon-d1.log"
    daemon.write_text('{"event": "order.delivered", "ref": "R1"}\n'
                      f'{{"event": "oops", "detail": "got x{K2}y"}}\n', encoding="utf-8")
    cli = tmp_path / "cli.log"
    cli.write_text("fine\nkey=c2VjcmV0LWNhcmQta2V5LW1hdGVyaWFs= and abc\n", encoding="utf-8")

    findings = scan_logs([daemon, cli], needles)

    assert findings == [
        'daemon-d1.log:2: a card password fulu issued for F2: {"event": "oops", "detail": "got x<FOUND>y"}',
        "cli.log:2: secret FULFIL_CARD_KEY: key=<FOUND> and abc",  # a 3-character value is not looked for
    ]
    assert K2 not in "".join(findings)
    clean = tmp_path / "clean.log"
    clean.write_text(f'{{"card": "****{K1[-4:]}"}}\n', encoding="utf-8")  # a masked key is no finding
    assert scan_logs([clean], needles) == []
