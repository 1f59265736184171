"""After-sales: buyer reports resolved automatically when the rules allow (L1), people's queues with time limits
(L2/L3), reissues bought through the engine with a claim against the supplier, the reissue ledger, evidence
files and hotspot alerts.

Pure decisions: `l1.decide`, `l1.topup_verdict`, `hotspots.find_hotspots`. The desk (`desk.Desk`) takes a report
or an operator's action through storage (`fulfil/storage/store_aftersales.py`); its periodic tick escalates
cases past their time limit and looks for hotspots.
"""

from fulfil.aftersales.credit import NEUTRAL_CREDIT, CreditBook, NeutralCredit, credit_book
from fulfil.aftersales.model import (
    LEDGER_FIELDS,
    Action,
    Case,
    CaseStatus,
    Level,
    Outcome,
    Problem,
    ReissueEntry,
    Report,
)

__all__ = [
    "LEDGER_FIELDS",
    "NEUTRAL_CREDIT",
    "Action",
    "Case",
    "CaseStatus",
    "CreditBook",
    "Level",
    "NeutralCredit",
    "Outcome",
    "Problem",
    "Report",
    "ReissueEntry",
    "credit_book",
]
