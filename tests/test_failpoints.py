from __future__ import annotations

import pytest

from fulfil.failpoints import parse


def test_failpoints_parse_name_seconds_pairs() -> None:
    assert parse("") == {}
    assert parse("after_receipt=0.3, other=2") == {"after_receipt": 0.3, "other": 2.0}


@pytest.mark.parametrize("bad", ["after_receipt", "=1", "x=abc", "x=-1", "x=61"])
def test_a_malformed_failpoint_is_refused_naming_it(bad: str) -> None:
    with pytest.raises(ValueError, match="FULFIL_FAILPOINTS"):
        parse(bad)
