"""Buyers and risk: decided after payment, before the first supplier call.

- `identity`: normalising, masking and naming buyer identities;
- `rules`: the decision as a pure function of (the order's facts, figures counted by the store, config, now);
- storage lives in `fulfil/storage/store_risk.py`; the engine calls the decision before routing.
"""
