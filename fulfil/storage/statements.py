"""The hot path's statements, built once with bound parameters.

SQLAlchemy builds a statement object and its cache key on every call that constructs one; these are the
statements every order runs, so they are built once per process (and dialect) and executed with parameters.
Measured on this project's 2-core machine (`benchmarks/PROFILE.md`): 15 % (SQLite) to 45 % (PostgreSQL) less
CPU per statement than building it each time.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    BindParameter,
    Boolean,
    ColumnElement,
    Integer,
    Interval,
    LargeBinary,
    String,
    and_,
    any_,
    bindparam,
    cast,
    column,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    type_coerce,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY

from fulfil.config import CREDIT_KINDS
from fulfil.domain import AttemptState, OrderStatus
from fulfil.storage.coltypes import UTCDateTime
from fulfil.storage.schema import attempts, cooldowns, orders, receipts, reissues, risk_blocks, risk_credit
from fulfil.storage.schema import outbox as outbox_table

_PENDING = OrderStatus.PENDING.value
_PROCESSING = OrderStatus.PROCESSING.value


def claimable(db_time: ColumnElement[Any]) -> ColumnElement[bool]:
    """Orders a worker may take at `db_time` (the database's now): pending and not parked past it, or
    processing under a lease that ran out."""
    return or_(
        and_(orders.c.status == _PENDING, or_(orders.c.not_before.is_(None), orders.c.not_before <= db_time)),
        and_(orders.c.status == _PROCESSING, orders.c.lease_expires <= db_time),
    )


def needs_risk(now: ColumnElement[Any], credit_start: ColumnElement[Any]) -> ColumnElement[bool]:
    """Whether risk must look at an order although no rule is configured: a block is active (at `now`) or
    one of the order's buyer identities has credit below `credit_start`."""
    block_active = exists().where(or_(risk_blocks.c.until.is_(None), risk_blocks.c.until > now))
    hashes = [orders.c[f"{kind}_hash"] for kind in CREDIT_KINDS]
    low_credit = exists().where(risk_credit.c.hash.in_(hashes), risk_credit.c.score < credit_start)
    return or_(block_active, low_credit)


# --- PostgreSQL's reads and claim on the hot path's connections (fulfil/storage/direct.py: `each`) ----------

_IDS = ARRAY(BigInteger())


@cache
def claim_postgresql() -> Any:
    """The claim as one statement (its own transaction): the oldest claimable orders, rows other claims have
    locked skipped, leased to `owner` for `lease` (an interval) on the database's clock."""
    chosen = (
        select(orders.c.id)
        .where(claimable(func.now(type_=UTCDateTime())))
        .order_by(orders.c.id)
        .limit(bindparam("limit", type_=Integer()))
        .with_for_update(skip_locked=True)
        .cte("chosen")
        .prefix_with("MATERIALIZED")
    )
    expires = type_coerce(func.clock_timestamp() + bindparam("lease", type_=Interval()), UTCDateTime())
    return (
        update(orders)
        .where(orders.c.id == chosen.c.id)
        .values(
            status=_PROCESSING,
            lease_owner=bindparam("owner", type_=String()),
            lease_expires=expires,
            not_before=None,
            updated_at=bindparam("now", type_=UTCDateTime()),
        )
        .returning(*orders.c)
    )


@cache
def risk_checked_postgresql() -> Any:
    """Which of the orders `ids` risk must look at (`needs_risk`)."""
    now = bindparam("now", type_=UTCDateTime())
    return select(orders.c.id).where(
        orders.c.id == any_(bindparam("ids", type_=_IDS)),
        needs_risk(now, bindparam("credit_start", type_=Integer())),
    )


@cache
def attempts_of_postgresql() -> Any:
    """The attempts of the orders `ids`, oldest first."""
    return select(attempts).where(attempts.c.order_id == any_(bindparam("ids", type_=_IDS))).order_by(attempts.c.id)


@cache
def cooldowns_postgresql() -> Any:
    """The cool-downs still running at `now`."""
    return select(cooldowns.c.supplier, cooldowns.c.product_id, cooldowns.c.until).where(
        cooldowns.c.until > bindparam("now", type_=UTCDateTime())
    )


@cache
def fence() -> Any:
    """Lock the order row if `owner` still holds it (RETURNING its id, else nothing)."""
    return (
        update(orders)
        .where(
            orders.c.id == bindparam("order_id"),
            orders.c.lease_owner == bindparam("owner"),
            orders.c.status == _PROCESSING,
        )
        .values(updated_at=bindparam("now"))
        .returning(orders.c.id)
    )


@cache
def insert_attempt(dialect: str, prefix: str, names: tuple[str, ...], fenced: bool) -> Any:
    """One INSERT that picks the new attempt's id and makes its number `prefix` + ten digits from it.

    `fenced`: the attempt is written only while `owner` holds the order (processing); no row back means the
    lease is lost. The fence is the INSERT's own source row, one statement instead of a fence UPDATE and an
    INSERT: PostgreSQL locks the order row (FOR NO KEY UPDATE) until the commit as that UPDATE did, so a sweeper or
    another daemon's claim waits for it or skips it; on SQLite BEGIN IMMEDIATE holds the database's lock."""
    if dialect == "postgresql":
        new_id: Any = func.nextval(func.pg_get_serial_sequence("attempts", "id"))
    else:  # under BEGIN IMMEDIATE no other writer can take the same id between this read and the insert
        new_id = select(func.coalesce(func.max(attempts.c.id), 0) + 1).scalar_subquery()
    order_id: Any = bindparam("order_id", type_=attempts.c.order_id.type)
    picked = select(new_id.label("id"))
    if fenced:
        order_id = orders.c.id
        picked = picked.where(
            orders.c.id == bindparam("order_id"),
            orders.c.lease_owner == bindparam("owner"),
            orders.c.status == _PROCESSING,
        )
        if dialect == "postgresql":  # FOR NO KEY UPDATE: the lock the fence UPDATE took
            picked = picked.with_for_update(of=orders, key_share=True)
    source = picked.add_columns(order_id.label("order_id")).subquery("picked")
    digits = (
        func.lpad(cast(source.c.id, String), 10, "0") if dialect == "postgresql" else func.printf("%010d", source.c.id)
    )
    row = [source.c.order_id if name == "order_id" else bindparam(name, type_=attempts.c[name].type) for name in names]
    chosen = select(source.c.id, literal(prefix, String) + digits, *row)
    return insert(attempts).from_select(["id", "number", *names], chosen).returning(*attempts.c)


@cache
def deliver_order(fenced: bool) -> Any:
    """Order -> delivered; `fenced`: only while `owner` holds it."""
    stmt = update(orders).where(orders.c.id == bindparam("order_id"))
    if fenced:
        stmt = stmt.where(orders.c.lease_owner == bindparam("owner"), orders.c.status == _PROCESSING)
    return stmt.values(
        status=OrderStatus.DELIVERED.value,
        reason=None,
        delivered_at=bindparam("now"),
        updated_at=bindparam("now"),
        lease_owner=None,
        lease_expires=None,
    ).returning(orders.c.id)


@cache
def attempt_succeeded() -> Any:
    # Parameter names that are not the table's column names (SQLAlchemy reserves those in UPDATE ... SET).
    return (
        update(attempts)
        .where(attempts.c.id == bindparam("p_attempt"), attempts.c.order_id == bindparam("p_order"))
        .values(state=AttemptState.SUCCEEDED.value, finished_at=bindparam("now"))
        .returning(attempts.c.id)
    )


@cache
def receipt_applied() -> Any:
    return (
        update(receipts)
        .where(receipts.c.attempt_id == bindparam("p_attempt"), receipts.c.applied_at.is_(None))
        .values(applied_at=bindparam("now"))
    )


@cache
def attempt_with_receipt() -> Any:
    """The attempt's facts and its receipt's columns (prefixed `r_`, all NULL without one), in one read."""
    return (
        select(
            attempts.c.order_id,
            attempts.c.supplier_order_id,
            attempts.c.supplier_cost,
            attempts.c.evidence,
            *[c.label(f"r_{c.name}") for c in receipts.c],
        )
        .select_from(attempts.outerjoin(receipts, receipts.c.attempt_id == attempts.c.id))
        .where(attempts.c.id == bindparam("attempt_id"))
    )


@cache
def insert_receipt() -> Any:
    return insert(receipts).returning(receipts.c.id)


@cache
def attempt_facts(names: tuple[str, ...]) -> Any:
    """What an answer taught about the attempt (`v_<column>` parameters: SET reserves the column names)."""
    values = {name: bindparam(f"v_{name}", type_=attempts.c[name].type) for name in names}
    return update(attempts).where(attempts.c.id == bindparam("p_attempt")).values(values)


@cache
def reissue_link() -> Any:
    """Whether an order is an after-sales reissue (its case settles when it ends)."""
    return select(reissues.c.case_id).where(reissues.c.reissue_order_id == bindparam("order_id"))


# --- PostgreSQL: the receipt's write and the delivery each as one statement (direct.py: `each`) -----------
#
# Each statement below is atomic on its own (the server's implicit transaction), so it runs with no BEGIN or
# COMMIT: one round trip instead of five to seven. A data-modifying WITH sees one snapshot, so every later part
# reads what an earlier part wrote only through its RETURNING rows (`FROM done`, `FROM fresh`); that also makes
# the order row's lock come first, as every other writer takes them (base.StoreBase._complete_delivery).

_BYTES = ARRAY(LargeBinary())
_TEXTS = ARRAY(String())


@cache
def deliver_postgresql(event: tuple[str, ...] = ()) -> Any:
    """Order -> delivered (fenced by `owner`'s lease), its keys into deliveries in order, the attempt ->
    succeeded, its receipt applied, and with `event` (outbox columns but the channel, `e_<column>` parameters)
    the event's outbox row for each of `channels`. Written only when the attempt is the order's and the order is
    not an after-sales reissue (with `look_up`); the row says which held (`reissue`, `tried`, `held`: the lease,
    `delivered`)."""
    outbox = ""
    if event:
        outbox = f"""
), events AS (
    INSERT INTO outbox (channel, {", ".join(f'"{name}"' for name in event)})
    SELECT channel, {", ".join(f":e_{name}" for name in event)} FROM done, unnest(:channels) AS channel
    ON CONFLICT (channel, key) DO NOTHING"""
    sql = f"""
WITH link AS (
    SELECT 1 FROM reissues WHERE :look_up AND reissue_order_id = :order_id
), tried AS (
    SELECT 1 FROM attempts WHERE id = :attempt_id AND order_id = :order_id
), done AS (
    UPDATE orders SET status = :delivered, reason = NULL, delivered_at = :now, updated_at = :now,
        lease_owner = NULL, lease_expires = NULL
    WHERE id = :order_id AND lease_owner = :owner AND status = :processing
        AND NOT EXISTS (SELECT 1 FROM link) AND EXISTS (SELECT 1 FROM tried)
    RETURNING id
), keys AS (
    INSERT INTO deliveries (order_id, attempt_id, number_enc, password_enc, expires, fingerprint, created_at)
    SELECT done.id, :attempt_id, k.number_enc, k.password_enc, k.expires, k.fingerprint, :now
    FROM done, unnest(:numbers, :passwords, :expiries, :fingerprints)
        WITH ORDINALITY AS k(number_enc, password_enc, expires, fingerprint, position)
    ORDER BY k.position
    RETURNING 1
), succeeded AS (
    UPDATE attempts SET state = :succeeded, finished_at = :now
    FROM done WHERE attempts.id = :attempt_id AND attempts.order_id = :order_id
    RETURNING 1
), applied AS (
    UPDATE receipts SET applied_at = :now FROM done
    WHERE receipts.attempt_id = :attempt_id AND receipts.applied_at IS NULL
    RETURNING 1{outbox}
)
SELECT EXISTS (SELECT 1 FROM link) AS reissue, EXISTS (SELECT 1 FROM tried) AS tried,
    EXISTS (SELECT 1 FROM orders WHERE id = :order_id AND lease_owner = :owner AND status = :processing) AS held,
    EXISTS (SELECT 1 FROM done) AS delivered, (SELECT count(*) FROM keys) AS keys,
    (SELECT count(*) FROM succeeded) AS succeeded, (SELECT count(*) FROM applied) AS applied
"""
    return (
        text(sql)
        .bindparams(
            bindparam("look_up", type_=Boolean()),
            bindparam("order_id", type_=BigInteger()),
            bindparam("attempt_id", type_=BigInteger()),
            bindparam("owner", type_=String()),
            bindparam("now", type_=UTCDateTime()),
            bindparam("numbers", type_=_BYTES),
            bindparam("passwords", type_=_BYTES),
            bindparam("expiries", type_=_TEXTS),
            bindparam("fingerprints", type_=_TEXTS),
            bindparam("delivered", OrderStatus.DELIVERED.value, type_=String()),
            bindparam("processing", _PROCESSING, type_=String()),
            bindparam("succeeded", AttemptState.SUCCEEDED.value, type_=String()),
            *([bindparam("channels", type_=_TEXTS)] if event else []),
            *[bindparam(f"e_{name}", type_=outbox_table.c[name].type) for name in event],
        )
        .columns(
            column("reissue", Boolean()),
            column("tried", Boolean()),
            column("held", Boolean()),
            column("delivered", Boolean()),
            column("keys", BigInteger()),
            column("succeeded", BigInteger()),
            column("applied", BigInteger()),
        )
    )


# The attempt's columns a first receipt's facts are worked out from (store_receipts._facts), which its statement
# compares with the writer's copy.
FIRST_RECEIPT_SEEN: Final = ("evidence", "supplier_order_id", "supplier_cost")
FIRST_RECEIPT_VALUES: Final = ("kind", "supplier_order_id", "cost", "cards", "evidence")  # the receipt's own, as given


@cache
def first_receipt_postgresql(names: tuple[str, ...]) -> Any:
    """The attempt's first receipt with its keys (in order), and what the answer taught the attempt (`names`,
    `v_<column>` parameters); written only if the attempt has no receipt yet and still holds what the writer saw
    (`seen_<column>`: the facts were worked out from those). The attempt's row is locked first, as its UPDATE
    would. No row back: nothing written."""
    facts = ", ".join(f"{name} = :v_{name}" for name in names)
    unchanged = " AND ".join(f"{name} IS NOT DISTINCT FROM :seen_{name}" for name in FIRST_RECEIPT_SEEN)
    sql = f"""
WITH seen AS (
    SELECT id, order_id FROM attempts
    WHERE id = :attempt_id AND {unchanged}
    FOR NO KEY UPDATE
), fresh AS (
    INSERT INTO receipts (attempt_id, order_id, kind, supplier_order_id, cost, cards, evidence, created_at, updated_at)
    SELECT seen.id, seen.order_id, :kind, :supplier_order_id, :cost, :cards, :evidence, :now, :now FROM seen
    ON CONFLICT (attempt_id) DO NOTHING
    RETURNING id, order_id
), keys AS (
    INSERT INTO receipt_cards (receipt_id, position, number_enc, password_enc, expires)
    SELECT fresh.id, k.position - 1, k.number_enc, k.password_enc, k.expires
    FROM fresh, unnest(:numbers, :passwords, :expiries)
        WITH ORDINALITY AS k(number_enc, password_enc, expires, position)
    ORDER BY k.position
), facts AS (
    UPDATE attempts SET {facts} FROM fresh WHERE attempts.id = :attempt_id
)
SELECT id, order_id FROM fresh
"""
    binds: list[BindParameter[Any]] = [
        bindparam("attempt_id", type_=BigInteger()),
        bindparam("now", type_=UTCDateTime()),
        bindparam("numbers", type_=_BYTES),
        bindparam("passwords", type_=_BYTES),
        bindparam("expiries", type_=_TEXTS),
        *[bindparam(f"seen_{name}", type_=attempts.c[name].type) for name in FIRST_RECEIPT_SEEN],
        *[bindparam(name, type_=receipts.c[name].type) for name in FIRST_RECEIPT_VALUES],
        *[bindparam(f"v_{name}", type_=attempts.c[name].type) for name in names],
    ]
    return text(sql).bindparams(*binds).columns(column("id", BigInteger()), column("order_id", BigInteger()))
