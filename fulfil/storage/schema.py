"""The tables, as SQLAlchemy Core: migrations create them, the queries are written against these.

Keep in step with `migrations/versions/`: a column added here needs a migration too.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from fulfil.storage.coltypes import JSONText, Money, UTCDateTime

# Names as the migrations spell them, so schema and database can be compared.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite only gives an auto-incrementing rowid alias to INTEGER PRIMARY KEY.
Id = BigInteger().with_variant(Integer(), "sqlite")

meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

orders = Table(
    "orders",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("ref", String(128), nullable=False, unique=True),
    Column("sku", String(128), nullable=False),
    Column("qty", Integer, nullable=False),
    Column("account", String(256)),
    Column("amount", Money),
    Column("status", String(16), nullable=False),
    Column("reason", Text),
    Column("lease_owner", String(128)),
    Column("lease_expires", UTCDateTime),
    # A pending order is not claimable before this: an order parked while a supplier makes up its mind.
    Column("not_before", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("delivered_at", UTCDateTime),
    Index("ix_orders_claim", "status", "lease_expires"),
)

attempts = Table(
    "attempts",
    metadata,
    # PostgreSQL: CHECK id < 10^10 (migration 0010), so the number made from it is never cut off.
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("order_id", Id, ForeignKey("orders.id"), nullable=False, index=True),
    # Null only inside the inserting transaction: the number is made from the new row's id.
    Column("number", String(32), unique=True),
    Column("supplier", String(128), nullable=False),
    Column("offer_index", Integer, nullable=False),
    Column("qty", Integer, nullable=False),
    Column("cost", Money),
    Column("state", String(16), nullable=False),
    Column("error_class", String(32)),
    Column("supplier_order_id", String(128)),
    Column("evidence", JSONText, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime),
    Column("finished_at", UTCDateTime),
    # What the supplier said it charged (the receipt's cost); `cost` is what the offer said it would.
    Column("supplier_cost", Money),
    # The latest (re-)send: "no such order" only counts as gone measured from here.
    Column("last_sent_at", UTCDateTime),
    # When the resolver next asks about this open attempt (backoff per attempt, so none can starve the rest).
    Column("next_check_at", UTCDateTime),
    Column("checks", Integer, nullable=False, server_default="0"),
    Index("ix_attempts_state", "state"),
    Index("ix_attempts_next_check", "state", "next_check_at"),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("order_id", Id, ForeignKey("orders.id"), nullable=False, index=True),
    Column("attempt_id", Id, ForeignKey("attempts.id"), nullable=False),
    Column("number_enc", LargeBinary, nullable=False),
    Column("password_enc", LargeBinary, nullable=False),
    Column("expires", String(64)),
    # The rule "no card key is delivered to two orders", enforced by the database.
    Column("fingerprint", String(64), nullable=False, unique=True),
    Column("created_at", UTCDateTime, nullable=False),
)

stock = Table(
    "stock",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("sku", String(128), nullable=False),
    Column("number_enc", LargeBinary, nullable=False),
    Column("password_enc", LargeBinary, nullable=False),
    Column("expires", String(64)),
    Column("fingerprint", String(64), nullable=False, unique=True),
    Column("imported_at", UTCDateTime, nullable=False),
    Column("source_attempt", Id, ForeignKey("attempts.id")),  # set when a supplier's late keys came back
    Column("used_by_attempt", Id, ForeignKey("attempts.id")),
    Column("used_at", UTCDateTime),
)
# Partial index: taking stock only ever looks at unused rows of one sku, oldest first.
Index(
    "ix_stock_available",
    stock.c.sku,
    stock.c.id,
    sqlite_where=stock.c.used_by_attempt.is_(None),
    postgresql_where=stock.c.used_by_attempt.is_(None),
)

held_cards = Table(
    "held_cards",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("attempt_id", Id, ForeignKey("attempts.id"), nullable=False),
    Column("number_enc", LargeBinary, nullable=False),
    Column("password_enc", LargeBinary, nullable=False),
    Column("expires", String(64)),
    Column("fingerprint", String(64), nullable=False, index=True),
    Column("reason", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    # Set when an operator released the key (to stock, or to an order in review): held no more.
    Column("released_at", UTCDateTime),
    Column("released_to", String(160)),
    UniqueConstraint("attempt_id", "fingerprint", name="uq_held_cards_attempt_fingerprint"),
    Index("ix_held_cards_released", "released_at", "id"),
)

claims = Table(
    "claims",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("claim_no", String(32), unique=True),  # null only inside the inserting transaction
    Column("attempt_id", Id, ForeignKey("attempts.id"), nullable=False),
    Column("order_id", Id, ForeignKey("orders.id"), nullable=False),
    Column("supplier", String(128), nullable=False),
    Column("reason", String(32), nullable=False),
    Column("amount", Money),
    Column("qty", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("note", Text),
    Column("evidence", JSONText, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # Recovery may run twice; the database keeps it to one claim per (attempt, reason).
    UniqueConstraint("attempt_id", "reason", name="uq_claims_attempt_reason"),
    Index("ix_claims_supplier_status", "supplier", "status"),
)

events = Table(
    "events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    Column("name", String(64), nullable=False),
    Column("order_id", Id),  # no foreign key: events are a log and may outlive or precede rows
    Column("supplier", String(128)),
    Column("operator", String(128)),
    Column("data", JSONText, nullable=False),
    Index("ix_events_name", "name", "id"),
    Index("ix_events_order", "order_id", "id"),
)

cooldowns = Table(
    "cooldowns",
    metadata,
    Column("supplier", String(128), primary_key=True),
    Column("product_id", String(128), primary_key=True),
    Column("until", UTCDateTime, nullable=False),
    Column("reason", Text, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

# --- supplier quality (migration 0002) ---------------------------------------------------------------------

# Quality windows read the attempts and claims of every supplier over a time range.
Index("ix_attempts_started", attempts.c.started_at)
Index("ix_claims_created", claims.c.created_at)

# Supplier calls counted per minute: an additive upsert per flush, whatever the call rate, and a 7-day
# window is at most 10,080 rows per supplier.
supplier_calls = Table(
    "supplier_calls",
    metadata,
    Column("supplier", String(128), primary_key=True),
    Column("minute", UTCDateTime, primary_key=True),  # start of the minute
    Column("calls", Integer, nullable=False),
    Column("ok", Integer, nullable=False),
    Column("latency_sum", Float, nullable=False),  # seconds, over calls that reported one
    Column("latency_max", Float, nullable=False),
)

# What the daemon last knew of each supplier, for `fulfil suppliers` (another process).
supplier_health = Table(
    "supplier_health",
    metadata,
    Column("supplier", String(128), primary_key=True),
    Column("score", Float, nullable=False),
    Column("components", JSONText, nullable=False),
    Column("breaker", String(16), nullable=False),
    Column("opened_until", UTCDateTime),
    Column("ejections", Integer, nullable=False),
    Column("demoted", Boolean, nullable=False),
    Column("balance", Money),
    Column("balance_at", UTCDateTime),
    Column("detail", JSONText, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

# --- receipts (migration 0003) -----------------------------------------------------------------------------

# The supplier's answer about one attempt, committed before anything is done with it and independent of the
# lease: delivery, claims and stock returns work from here, so a crash or a lost lease after the answer never
# loses what the supplier charged for. One per attempt; an acknowledged receipt is upgraded when goods arrive.
receipts = Table(
    "receipts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("attempt_id", Id, ForeignKey("attempts.id"), nullable=False, unique=True),
    Column("order_id", Id, ForeignKey("orders.id"), nullable=False),
    Column("kind", String(16), nullable=False),  # goods | acknowledged | charged_no_goods
    Column("supplier_order_id", String(128)),
    Column("cost", Money),
    Column("cards", Integer, nullable=False),
    Column("evidence", JSONText, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("applied_at", UTCDateTime),  # delivered, claimed or returned from: done with
    Index("ix_receipts_open", "applied_at", "id"),
)

receipt_cards = Table(
    "receipt_cards",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("receipt_id", Id, ForeignKey("receipts.id"), nullable=False),
    Column("position", Integer, nullable=False),
    Column("number_enc", LargeBinary, nullable=False),
    Column("password_enc", LargeBinary, nullable=False),
    Column("expires", String(64)),
    UniqueConstraint("receipt_id", "position", name="uq_receipt_cards_receipt_id"),
)

# --- retention (migration 0004) ----------------------------------------------------------------------------

# The retention job deletes the oldest events first, in small batches (`Store.prune_events`).
Index("ix_events_at", events.c.at)

# --- shop sources (migration 0005) -------------------------------------------------------------------------

# fulfil's record of each shop order a source saw and took (fulfil/sources): committed *before* the shop's own
# "taken" mark (state `taking`), so a crash between the two databases is repaired by looking at the shop row
# again; then `taken` with the order it became; `written` once the keys (or the failure) are in the shop's row.
# `refused` rows are shop orders fulfil cannot take as they are (the reason says why); `review` ones need a
# person. One row per (source, shop order number): a second poll can never take an order twice.
source_orders = Table(
    "source_orders",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("source", String(64), nullable=False),
    Column("ref", String(160), nullable=False),  # the shop's order number (dujiaoka order_sn is varchar(150))
    Column("shop_id", BigInteger, nullable=False),  # the shop row's primary key
    Column("goods_id", String(32), nullable=False),
    Column("kind", String(16), nullable=False),  # manual | abnormal
    Column("seen_status", Integer, nullable=False),  # the shop's status when fulfil saw the row
    Column("mark", String(64)),  # what fulfil's take wrote at the shop besides the status (dujiaoka updated_at)
    Column("sku", String(128), nullable=False),
    Column("qty", Integer, nullable=False),
    Column("account", String(256)),
    Column("amount", Money),
    Column("state", String(16), nullable=False),  # refused | taking | taken | written | review
    Column("order_id", Id, ForeignKey("orders.id"), unique=True),
    Column("outcome", String(16)),  # written back: delivered | failed
    Column("reason", Text),  # why refused / in review; the last write-back error
    Column("tries", Integer, nullable=False, server_default="0"),
    Column("failing_since", UTCDateTime),  # the write-back has failed since (the shop's database unreachable)
    Column("next_try_at", UTCDateTime),  # the database's clock: when this row is looked at next
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("source", "ref", name="uq_source_orders_source_ref"),
    Index("ix_source_orders_state", "source", "state", "next_try_at"),
)

# Each source's last poll, for `fulfil sources` (another process).
source_polls = Table(
    "source_polls",
    metadata,
    Column("source", String(64), primary_key=True),
    Column("polled_at", UTCDateTime, nullable=False),
    Column("ok_at", UTCDateTime),
    Column("error", Text),
)

# --- notifications (migration 0006) ------------------------------------------------------------------------

# The buyer's contact as intake gave it (e-mail or phone), encrypted like card keys; masked wherever shown.
orders.append_column(Column("contact_enc", LargeBinary))
# Delay statistics read recent deliveries by time.
Index("ix_orders_delivered_at", orders.c.delivered_at)

# The transactional outbox: one row per (event, channel), written in the transaction of the change when a
# configured channel subscribes to the event's type. `event_id` is shared by an event's rows and is the
# `webhook-id` on every try; `key` makes once-per-order events unique per channel (NULL: may repeat).
outbox = Table(
    "outbox",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("event_id", String(48), nullable=False),
    Column("type", String(64), nullable=False),
    Column("channel", String(80), nullable=False),
    Column("key", String(200)),
    Column("order_id", Id),
    Column("subject", String(160)),
    Column("data", JSONText, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    # pending -> sending (leased) -> delivered | pending (retry) | dead | skipped
    Column("state", String(12), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_at", UTCDateTime, nullable=False),
    Column("lease_owner", String(128)),
    Column("lease_until", UTCDateTime),
    Column("last_status", Integer),
    Column("last_error", Text),
    Column("last_at", UTCDateTime),
    Column("done_at", UTCDateTime),
    UniqueConstraint("channel", "key", name="uq_outbox_channel"),
    Index("ix_outbox_due", "state", "next_at", "channel"),
    Index("ix_outbox_event", "event_id"),
    Index("ix_outbox_done", "done_at"),
)

# A channel the dispatcher stopped sending to (a 410 Gone); `fulfil webhooks enable NAME` clears it.
notify_endpoints = Table(
    "notify_endpoints",
    metadata,
    Column("name", String(80), primary_key=True),
    Column("disabled_at", UTCDateTime),
    Column("reason", Text),
    Column("updated_at", UTCDateTime, nullable=False),
)

# When an alert (kind:subject) was last raised: one per quiet period, whichever daemon sees it.
alert_state = Table(
    "alert_state",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("last_at", UTCDateTime, nullable=False),
)

# --- buyers and risk (migration 0007) ----------------------------------------------------------------------

# Buyer identities: a keyed hash (fulfil.crypto.identity_hash) to match on, the value encrypted for whoever
# needs to read it (masked wherever shown). `account` itself is the recharge account, kept as it was.
orders.append_column(Column("contact_hash", String(64)))
orders.append_column(Column("ip_hash", String(64)))
orders.append_column(Column("user_hash", String(64)))
orders.append_column(Column("device_hash", String(64)))
orders.append_column(Column("account_hash", String(64)))
orders.append_column(Column("ip_enc", LargeBinary))
orders.append_column(Column("user_enc", LargeBinary))
orders.append_column(Column("device_enc", LargeBinary))
# When risk let the order through (or a person released it); the rules count these, by identity and time.
orders.append_column(Column("risk_passed_at", UTCDateTime))
# The decision: each rule evaluated with its figures (`fulfil risk explain`).
orders.append_column(Column("risk", JSONText))
Index("ix_orders_contact_hash", orders.c.contact_hash)
# Velocity, limits, denominations: one identity's orders let through since a time.
Index("ix_orders_contact_risk", orders.c.contact_hash, orders.c.risk_passed_at)
Index("ix_orders_ip_risk", orders.c.ip_hash, orders.c.risk_passed_at)
Index("ix_orders_user_risk", orders.c.user_hash, orders.c.risk_passed_at)
Index("ix_orders_device_risk", orders.c.device_hash, orders.c.risk_passed_at)
Index("ix_orders_account_risk", orders.c.account_hash, orders.c.risk_passed_at)

# A shop order's buyer (contact, address), encrypted, carried from the taking record to the order it becomes.
source_orders.append_column(Column("contact_enc", LargeBinary))
source_orders.append_column(Column("ip_enc", LargeBinary))

# Blocked buyers: an exact identity (by its keyed hash) or, for ip, a network (CIDR, kept as text: a range is
# the operator's rule, not a buyer's address). An entry past `until` no longer blocks.
risk_blocks = Table(
    "risk_blocks",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),
    Column("hash", String(64), nullable=False),
    Column("network", String(64)),
    Column("value_enc", LargeBinary, nullable=False),
    Column("reason", Text, nullable=False),
    Column("until", UTCDateTime),
    Column("operator", String(128), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("kind", "hash", name="uq_risk_blocks_kind_hash"),
    Index("ix_risk_blocks_hash", "hash"),
)

# A buyer identity's credit score; no row means the configured start. Changes are in risk_credit_changes.
risk_credit = Table(
    "risk_credit",
    metadata,
    Column("hash", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("score", Integer, nullable=False),
    Column("recovered_at", UTCDateTime, nullable=False),  # delivered orders after this give credit back
    Column("updated_at", UTCDateTime, nullable=False),
)

# Every change of a credit score with its reason: the buyer's history (kept, never pruned like events).
risk_credit_changes = Table(
    "risk_credit_changes",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("hash", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("delta", Integer, nullable=False),
    Column("score", Integer, nullable=False),
    Column("reason", Text, nullable=False),
    Column("operator", String(128)),
    Column("order_id", Id),
    Index("ix_risk_credit_changes_hash", "hash", "id"),
)

# --- after-sales (migration 0008) --------------------------------------------------------------------------

# A reissue is an order of its own (a child of the order it makes good), bought by the normal engine under
# every money rule: write-ahead attempts, receipts, leases, failover. `reissue_of` links it to the original;
# `avoid_supplier` is routed last (the supplier that sold the bad key, unless it is the only one left).
orders.append_column(Column("reissue_of", Id))
orders.append_column(Column("avoid_supplier", String(128)))
Index("ix_orders_reissue_of", orders.c.reissue_of)

# A buyer's report and what became of it. `open_key` is "<order id>:<problem>" while the case is open and NULL
# once closed: the database keeps one open case per order and problem, whoever reports at the same time.
aftersales_cases = Table(
    "aftersales_cases",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("case_no", String(32), unique=True),  # null only inside the inserting transaction
    Column("order_id", Id, ForeignKey("orders.id"), nullable=False, index=True),
    Column("problem", String(32), nullable=False),  # key_invalid | not_received | topup_not_arrived | other
    Column("status", String(16), nullable=False),  # open | resolved | rejected
    Column("level", String(4), nullable=False),  # L1 | L2 | L3
    Column("outcome", String(16)),  # reissued | refunded | confirmed | answered
    Column("reason", Text),  # why it is with a person (L2/L3), or how it closed
    Column("text", Text),  # the buyer's words
    Column("attachments", JSONText, nullable=False),  # {"refs": [...]}: references, never the files
    Column("units", Integer, nullable=False, server_default="0"),  # keys reported
    Column("supplier", String(128)),  # the supplier whose purchase the report is about
    Column("attempt_id", Id, ForeignKey("attempts.id")),
    Column("decided_by", String(128)),
    Column("reports", Integer, nullable=False, server_default="1"),  # the first report and its repeats
    Column("open_key", String(64), unique=True),
    Column("due_at", UTCDateTime),  # the current level's time limit
    Column("alerted_at", UTCDateTime),  # L3 past its limit: alerted once
    Column("opened_at", UTCDateTime, nullable=False),
    Column("level_at", UTCDateTime, nullable=False),  # when the case reached its current level
    Column("closed_at", UTCDateTime),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_aftersales_cases_queue", "status", "level", "due_at"),
    Index("ix_aftersales_cases_opened", "opened_at"),
)

# The delivered keys a report names (by delivery and fingerprint): "reported before" is a lookup here.
aftersales_keys = Table(
    "aftersales_keys",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("case_id", Id, ForeignKey("aftersales_cases.id"), nullable=False, index=True),
    Column("delivery_id", Id, ForeignKey("deliveries.id"), nullable=False, index=True),
    Column("fingerprint", String(64), nullable=False, index=True),
    Column("created_at", UTCDateTime, nullable=False),
)

# One row per reissue decision (automatic or by an operator): who decided, why, which purchase it replaces and
# its claim. Suppliers, costs and supplier order ids are read from the attempts: the ledger is a view of the
# books, not a second copy. `reissue_order_id` is unique: one decision buys one child order, never two.
reissues = Table(
    "reissues",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("case_id", Id, ForeignKey("aftersales_cases.id"), nullable=False, index=True),
    Column("order_id", Id, ForeignKey("orders.id"), nullable=False, index=True),
    Column("reissue_order_id", Id, ForeignKey("orders.id"), nullable=False, unique=True),
    Column("original_attempt_id", Id, ForeignKey("attempts.id")),
    Column("claim_id", Id, ForeignKey("claims.id")),
    Column("units", Integer, nullable=False),
    Column("reason", Text, nullable=False),
    Column("decided_by", String(128), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_reissues_created", "created_at"),
)

# --- console (migration 0009) ------------------------------------------------------------------------------

# Support finds an order by the e-mail or phone the buyer gives through `contact_hash` (migration 0007), without
# decrypting a single row.
# The console's searches and figures: by account, by day, a product's deliveries, end states by time.
Index("ix_orders_account", orders.c.account)
Index("ix_orders_created", orders.c.created_at)
Index("ix_orders_sku_delivered", orders.c.sku, orders.c.delivered_at)
Index("ix_orders_status_updated", orders.c.status, orders.c.updated_at)
# A search by status, newest first: a range of this index, not a walk of every order for a rare status.
Index("ix_orders_status_created", orders.c.status, orders.c.created_at)
Index("ix_attempts_supplier_order_id", attempts.c.supplier_order_id)
# An order's notifications, for its timeline.
Index("ix_outbox_order", outbox.c.order_id)
# Orders a person acted on (not automatic): the few events with an operator, by order.
Index(
    "ix_events_operator",
    events.c.order_id,
    sqlite_where=events.c.operator.isnot(None),
    postgresql_where=events.c.operator.isnot(None),
)

# Named console accounts (`fulfil operators add|list|disable`); the password as an argon2 hash.
operators = Table(
    "operators",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("role", String(16), nullable=False),  # viewer | agent | admin
    Column("password_hash", String(255), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("disabled_at", UTCDateTime),
    Column("last_login_at", UTCDateTime),
)

# A console login: the cookie's token is kept only as its SHA-256, with the CSRF token its forms carry.
console_sessions = Table(
    "console_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("operator", String(64), ForeignKey("operators.name"), nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Index("ix_console_sessions_expires", "expires_at"),
)
