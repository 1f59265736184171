"""The auditor: after the run, fulfil's records set against the suppliers' own ledgers, number by number.

`collect` reads what an operator can read: `fulfil orders list --json --reveal`, `fulfil claims export
--format json`, and, for the few figures no command prints (keys back in stock from a supplier's attempt,
keys held, attempts still open), a read-only SQL count. `audit` is a pure function of those facts; it returns
the figures and, per broken invariant, what broke.

Each unit a supplier charged for (its ledger: charged, success) must be exactly one of
- delivered: the number is the one delivering attempt of a delivered order, with the very keys issued;
- returned: its keys went back into fulfil's stock (late keys of a purchase the order moved on from);
- claimed: a claim against the supplier names the number (an invalid batch: its keys held as evidence);
- held: its keys are held (`held_cards`, not released) with no claim;
- awaiting: its order is in review with the attempt still open: a person has it, with the reason.
Anything else is a unit lost.

`scan_logs` reads every log line the run's daemons and CLI commands wrote, looking for any key the simulators
issued (their ledgers hold them in plaintext) and any configured secret: none may appear.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

END_STATES = ("delivered", "failed", "review")
OPEN_ATTEMPT_STATES = ("planned", "sent", "ambiguous")
# Error classes of succeeded attempts whose keys were not delivered (claimed, returned or held instead).
NOT_DELIVERING = ("invalid_key", "late", "charged_not_delivered")


@dataclass
class Facts:
    expected_refs: set[str]
    views: list[dict[str, Any]]
    claims: list[dict[str, Any]]
    ledgers: dict[str, dict[str, Any]]
    returned: Counter[str]  # attempt number -> keys back in stock from it
    held: Counter[str]  # attempt number -> keys held (not released)
    resellable_delivered: int = 0  # keys in stock, unused, that were also delivered


@dataclass
class SupplierFigures:
    charged: int = 0
    delivered: int = 0
    claimed: int = 0
    returned: int = 0
    held: int = 0
    awaiting: int = 0
    lost: int = 0

    def line(self) -> str:
        text = f"charged={self.charged} delivered={self.delivered} claimed={self.claimed} returned={self.returned}"
        text += f" held={self.held}"
        if self.awaiting:
            text += f" awaiting={self.awaiting}"
        return text


@dataclass
class Verdict:
    statuses: Counter[str] = field(default_factory=Counter)
    suppliers: dict[str, SupplierFigures] = field(default_factory=dict)
    broken: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    claims_by_reason: Counter[str] = field(default_factory=Counter)
    invalid_batches: int = 0

    def fail(self, invariant: str, detail: str) -> None:
        self.broken[invariant].append(detail)

    @property
    def ok(self) -> bool:
        return not self.broken


def _card(card: Mapping[str, Any]) -> tuple[str, str]:
    return (card.get("number") or "", card["password"])


def _attempts_text(view: Mapping[str, Any]) -> str:
    tried = ", ".join(f"{a['supplier']} {a['supplier_order_no']} {a['state']}/{a['error_class']}"
                      for a in view["attempts"])
    return f"order {view['ref']} ({view['status']}, {view['reason']!r}): {tried}"


class _Audit:
    def __init__(self, facts: Facts) -> None:
        self.f = facts
        self.v = Verdict(suppliers={name: SupplierFigures() for name in facts.ledgers})
        self.charged: dict[tuple[str, str], Mapping[str, Any]] = {}
        self.owner: dict[tuple[str, str], Mapping[str, Any]] = {}  # number -> the order that made the attempt
        self.attempt_of: dict[tuple[str, str], Mapping[str, Any]] = {}
        self.claimed: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.delivered_by: dict[tuple[str, str], str] = {}

    def run(self) -> Verdict:
        self.ledgers()
        self.orders()
        self.claims()
        self.units()
        self.keys()
        return self.v

    def ledgers(self) -> None:
        for name, ledger in self.f.ledgers.items():
            for order in ledger["orders"]:
                if not order["charged"]:
                    continue
                if order["state"] != "success":
                    self.v.fail("ledger_settled", f"{name} {order['number']}: charged but {order['state']}")
                    continue
                self.charged[(name, order["number"])] = order
                self.v.suppliers[name].charged += int(order["qty"])
                self.v.invalid_batches += 1 if order["invalid_keys"] else 0

    def orders(self) -> None:
        refs = Counter(v["ref"] for v in self.f.views)
        missing = self.f.expected_refs - set(refs)
        if missing:
            self.v.fail("all_orders_known", f"{len(missing)} imported order(s) not in fulfil: {sorted(missing)[:10]}")
        extra = set(refs) - self.f.expected_refs
        if extra or any(n > 1 for n in refs.values()):
            self.v.fail("all_orders_known", f"unexpected or repeated refs: {sorted(extra)[:10]}")
        for view in self.f.views:
            self.v.statuses[view["status"]] += 1
            for attempt in view["attempts"]:
                key = (attempt["supplier"], attempt["supplier_order_no"])
                self.owner[key] = view
                self.attempt_of[key] = attempt
            self.order(view)

    def order(self, view: Mapping[str, Any]) -> None:
        status = view["status"]
        if status not in END_STATES:
            self.v.fail("ended", f"order {view['ref']} is still {status}")
        elif status != "delivered" and not (view["reason"] or "").strip():
            self.v.fail("ended", f"order {view['ref']} is {status} without a reason")
        open_attempts = [a for a in view["attempts"] if a["state"] in OPEN_ATTEMPT_STATES]
        if open_attempts and status != "review":
            self.v.fail("attempts_closed", f"{_attempts_text(view)}: attempt(s) still open")
        delivering = [a for a in view["attempts"] if a["state"] == "succeeded"
                      and a["error_class"] not in NOT_DELIVERING and a["supplier"] in self.f.ledgers]
        if status != "delivered":
            if delivering:
                self.v.fail("delivered_as_charged", f"{_attempts_text(view)}: a delivering attempt, not delivered")
            if view["cards"]:
                self.v.fail("delivered_as_charged", f"order {view['ref']} is {status} but holds keys")
            return
        if len(delivering) != 1:
            self.v.fail("delivered_as_charged", f"{_attempts_text(view)}: {len(delivering)} delivering attempts")
            return
        key = (delivering[0]["supplier"], delivering[0]["supplier_order_no"])
        issued = self.charged.get(key)
        if issued is None:
            self.v.fail("delivered_as_charged", f"order {view['ref']}: delivered from {key}, which was not charged")
            return
        self.delivered_by[key] = view["ref"]
        if int(issued["qty"]) != int(view["qty"]) or len(view["cards"]) != (
            int(view["qty"]) if issued["cards"] else 0
        ):
            self.v.fail("delivered_as_charged", f"order {view['ref']}: qty {view['qty']}, {len(view['cards'])} "
                        f"key(s), but {key} charged {issued['qty']}")
        if sorted(map(_card, view["cards"])) != sorted(map(_card, issued["cards"])):
            self.v.fail("delivered_as_charged", f"order {view['ref']}: the keys delivered are not those {key} issued")

    def claims(self) -> None:
        for claim in self.f.claims:
            self.v.claims_by_reason[claim["reason"]] += 1
            key = (claim["supplier"], claim["supplier_order_no"])
            self.claimed[key].add(claim["reason"])
        for key, reasons in self.claimed.items():
            if key[0] not in self.f.ledgers:
                continue
            if key not in self.charged and reasons != {"possible_double"}:
                self.v.fail("claims_justified", f"{key}: claims {sorted(reasons)} but the supplier did not charge it")
            if key in self.delivered_by and reasons - {"possible_double"}:
                self.v.fail("claims_justified", f"{key}: delivered to {self.delivered_by[key]} and also claimed "
                            f"{sorted(reasons)}")

    def units(self) -> None:
        lost_per_order: dict[str, list[str]] = defaultdict(list)
        for key, issued in self.charged.items():
            view = self.owner.get(key)
            if issued["invalid_keys"] and not self.invalid_claimed(key):
                self.v.fail("invalid_claimed", f"{key}: invalid batch ({issued['invalid_keys']}) without an "
                            f"invalid_key claim; {_attempts_text(view) if view else 'no order knows it'}")
            lost = self.unit(key, int(issued["qty"]), view)
            if lost:
                where = _attempts_text(view) if view else "no order knows it"
                self.v.fail("books", f"{key[0]} {key[1]}: charged {issued['qty']} unit(s), {lost} neither "
                            f"delivered, returned, claimed nor held; {where}")
                if view is not None:
                    lost_per_order[view["ref"]].append(key[1])
        for view in self.f.views:
            numbers = [a["supplier_order_no"] for a in view["attempts"] if (a["supplier"], a["supplier_order_no"])
                       in self.charged]
            if len(numbers) > 1 and lost_per_order.get(view["ref"]):
                self.v.fail("no_double_buy", f"order {view['ref']} bought {len(numbers)} times, unclaimed: "
                            f"{lost_per_order[view['ref']]}; {_attempts_text(view)}")
        for name, figures in self.v.suppliers.items():
            total = figures.delivered + figures.claimed + figures.returned + figures.held + figures.awaiting
            if figures.lost:
                self.v.fail("books", f"{name}: charged {figures.charged} != delivered + claimed + returned + held"
                            f" + awaiting = {total}")

    def invalid_claimed(self, key: tuple[str, str]) -> bool:
        """An invalid batch needs its invalid_key claim, unless fulfil never saw the keys (the answer was lost:
        the attempt is still open, or was settled by "already exists" as charged without goods): then any claim
        on the number claims the money."""
        reasons = self.claimed.get(key, set())
        attempt = self.attempt_of.get(key)
        unseen = attempt is not None and (
            attempt["state"] in OPEN_ATTEMPT_STATES or attempt["error_class"] == "charged_not_delivered"
        )
        return "invalid_key" in reasons or (unseen and bool(reasons))

    def unit(self, key: tuple[str, str], qty: int, view: Mapping[str, Any] | None) -> int:
        """Count one charged number into its supplier's figures; the units lost (in no category)."""
        figures = self.v.suppliers[key[0]]
        if key in self.delivered_by:
            figures.delivered += qty
            return 0
        # Exclusive, in this order: keys back in stock; else under a claim (an invalid batch's keys are held
        # as evidence *and* claimed: claimed); else held with no claim; else awaiting a person in review.
        back = min(self.f.returned.get(key[1], 0), qty)
        figures.returned += back
        rest = qty - back
        if rest and key in self.claimed:
            figures.claimed += rest
            return 0
        held = min(self.f.held.get(key[1], 0), rest)
        figures.held += held
        rest -= held
        attempt = self.attempt_of.get(key)
        if rest and view is not None and view["status"] == "review" and attempt is not None \
                and attempt["state"] in OPEN_ATTEMPT_STATES:
            figures.awaiting += rest
            return 0
        figures.lost += rest
        return rest

    def keys(self) -> None:
        keys = Counter(_card(card) for view in self.f.views for card in view["cards"])
        twice = [k for k, n in keys.items() if n > 1]
        if twice:
            self.v.fail("no_key_twice", f"{len(twice)} key(s) delivered to more than one order")
        if self.f.resellable_delivered:
            self.v.fail("no_key_twice", f"{self.f.resellable_delivered} delivered key(s) are also in stock, unused")


def audit(facts: Facts) -> Verdict:
    return _Audit(facts).run()


# --- no secret in any log line ------------------------------------------------------------------------------

# Shorter values are not looked for: a 4-character key would match by chance in any log.
MIN_NEEDLE = 8


def log_needles(ledgers: Mapping[str, Mapping[str, Any]], secrets: Mapping[str, str]) -> dict[str, str]:
    """What must never reach a log, each with a label safe to print: every key (number and password) each
    simulator issued, charged or not, and the configured secrets by name."""
    needles: dict[str, str] = {}
    for name, ledger in ledgers.items():
        for order in ledger["orders"]:
            for card in order.get("cards") or ():
                for part in ("number", "password"):
                    value = card.get(part) or ""
                    if value:
                        needles[value] = f"a card {part} {name} issued for {order['number']}"
    for label, value in secrets.items():
        if value:
            needles[value] = f"secret {label}"
    return needles


def _hits(line: str, runs: re.Pattern[str], lengths: Sequence[int], wanted: Mapping[str, str]) -> set[str]:
    hits: set[str] = set()
    for match in runs.finditer(line):
        run = match.group()
        for n in lengths:
            hits.update(run[i:i + n] for i in range(len(run) - n + 1) if run[i:i + n] in wanted)
    return hits


def scan_logs(paths: Sequence[Path], needles: Mapping[str, str], *, limit: int = 50) -> list[str]:
    """One finding per log line that holds a needle: `file:line: what: the line with it cut out`.

    Fast on large logs: a needle lies inside a run of the characters needles are made of, so only those runs
    are cut into windows of each needle length and looked up."""
    wanted = {value: label for value, label in needles.items() if len(value) >= MIN_NEEDLE}
    if not wanted:
        return []
    lengths = sorted({len(value) for value in wanted})
    alphabet = re.escape("".join(sorted(set("".join(wanted)))))
    runs = re.compile(f"[{alphabet}]{{{lengths[0]},}}")
    findings: list[str] = []
    for path in paths:
        with path.open(encoding="utf-8", errors="replace") as log:
            for lineno, line in enumerate(log, 1):
                hits = _hits(line, runs, lengths, wanted)
                if not hits:
                    continue
                shown = line.rstrip("\n")
                for hit in hits:
                    shown = shown.replace(hit, "<FOUND>")
                what = "; ".join(sorted(wanted[hit] for hit in hits))
                findings.append(f"{path.name}:{lineno}: {what}: {shown[:300]}")
                if len(findings) >= limit:
                    return findings
    return findings


# --- reading the facts -------------------------------------------------------------------------------------


def sync_url(url: str) -> str:
    """fulfil's database URL for a synchronous read-only engine (psycopg 3 is both; SQLite's stdlib driver)."""
    if url.startswith("sqlite+aiosqlite://"):
        return "sqlite://" + url.removeprefix("sqlite+aiosqlite://")
    return url


def db_counts(url: str) -> tuple[Counter[str], Counter[str], int]:
    """(keys back in stock per attempt number, keys held per attempt number, delivered keys still in stock)."""
    engine = create_engine(sync_url(url), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            returned = Counter({r[0]: int(r[1]) for r in conn.execute(text(
                "SELECT a.number, count(*) FROM stock s JOIN attempts a ON a.id = s.source_attempt GROUP BY a.number"
            ))})
            held = Counter({r[0]: int(r[1]) for r in conn.execute(text(
                "SELECT a.number, count(*) FROM held_cards h JOIN attempts a ON a.id = h.attempt_id "
                "WHERE h.released_at IS NULL GROUP BY a.number"
            ))})
            resellable = int(conn.execute(text(
                "SELECT count(*) FROM stock s JOIN deliveries d ON d.fingerprint = s.fingerprint "
                "WHERE s.used_by_attempt IS NULL"
            )).scalar_one())
    finally:
        engine.dispose()
    return returned, held, resellable


def status_counts(url: str) -> Counter[str]:
    """Orders per status, straight from the table: cheap enough to poll while the run goes on."""
    engine = create_engine(sync_url(url), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT status, count(*) FROM orders GROUP BY status")).all()
            open_attempts = conn.execute(text(
                "SELECT count(*) FROM attempts a JOIN orders o ON o.id = a.order_id "
                "WHERE a.state IN ('planned', 'sent', 'ambiguous') AND o.status <> 'review'"
            )).scalar_one()
    finally:
        engine.dispose()
    counts = Counter({str(r[0]): int(r[1]) for r in rows})
    counts["open_attempts"] = int(open_attempts)
    return counts


def summarise_broken(verdict: Verdict, limit: int = 8) -> str:
    lines = []
    for name, details in sorted(verdict.broken.items()):
        lines.append(f"BROKEN {name}: {len(details)} finding(s)")
        lines += [f"  - {d}" for d in details[:limit]]
    return "\n".join(lines)


def write_findings(verdict: Verdict, path: Path) -> None:
    path.write_text("\n".join(f"{name}\t{d}" for name, ds in sorted(verdict.broken.items()) for d in ds) + "\n",
                    encoding="utf-8")


def save_facts(facts: Facts, path: Path) -> None:
    """Everything the audit read (simulator keys in plaintext: test data), so a run can be audited again."""
    data = {
        "expected_refs": sorted(facts.expected_refs), "views": facts.views, "claims": facts.claims,
        "ledgers": facts.ledgers, "returned": dict(facts.returned), "held": dict(facts.held),
        "resellable_delivered": facts.resellable_delivered,
    }
    path.write_text(json.dumps(data), encoding="utf-8")


def load_facts(path: Path) -> Facts:
    data = json.loads(path.read_text(encoding="utf-8"))
    return Facts(
        expected_refs=set(data["expected_refs"]), views=data["views"], claims=data["claims"],
        ledgers=data["ledgers"], returned=Counter(data["returned"]), held=Counter(data["held"]),
        resellable_delivered=int(data["resellable_delivered"]),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m chaos.audit WORKDIR/facts.json`: audit a finished run again (after the auditor changed)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m chaos.audit FACTS.json", file=sys.stderr)
        return 2
    verdict = audit(load_facts(Path(args[0])))
    if not verdict.ok:
        print(summarise_broken(verdict), file=sys.stderr)
    statuses = " ".join(f"{k}={v}" for k, v in sorted(verdict.statuses.items()))
    suppliers = " | ".join(f"{name}: {figures.line()}" for name, figures in verdict.suppliers.items())
    print(f"audit {statuses} | {suppliers} | result=" + ("OK" if verdict.ok else
                                                        "BROKEN(" + ",".join(sorted(verdict.broken)) + ")"))
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
