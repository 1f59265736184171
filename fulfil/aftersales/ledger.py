"""The reissue ledger (补发台账) as people read it: JSON-ready rows, CSV, a text table. Buyer contacts masked."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from fulfil.aftersales.model import LEDGER_FIELDS, ReissueEntry
from fulfil.aftersales.proof import normalise
from fulfil.notify.events import mask_contact


def entry_dict(entry: ReissueEntry) -> dict[str, Any]:
    """The issue's keys (LEDGER_FIELDS) first, then what support staff search by."""
    return {
        "ref": entry.ref,
        "case_no": entry.case_no,
        "reason": entry.reason,
        "original_supplier": entry.original_supplier,
        "original_supplier_order_no": entry.original_supplier_order_no,
        "new_supplier": entry.new_supplier,
        "new_supplier_order_no": entry.new_supplier_order_no,
        "units": entry.units,
        "cost": str(entry.cost) if entry.cost is not None else None,
        "claim_no": entry.claim_no,
        "decided_by": entry.decided_by,
        "created_at": entry.created_at.isoformat(),
        "reissue_ref": entry.reissue_ref,
        "reissue_status": entry.reissue_status,
        "claim_status": entry.claim_status,
        "sku": entry.sku,
        "amount": str(entry.amount) if entry.amount is not None else None,
        "contact": mask_contact(entry.contact),
    }


def by_contact(entries: Iterable[ReissueEntry], contact: str | None) -> list[ReissueEntry]:
    """Entries of one buyer (trimmed, case-insensitive), the contact being encrypted in the database."""
    if contact is None:
        return list(entries)
    wanted = normalise(contact)
    return [e for e in entries if e.contact is not None and normalise(e.contact) == wanted]


def write_csv(entries: Sequence[ReissueEntry], stream: TextIO) -> int:
    writer = csv.DictWriter(stream, fieldnames=list(LEDGER_FIELDS), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for entry in entries:
        writer.writerow({k: "" if v is None else v for k, v in entry_dict(entry).items()})
    return len(entries)
