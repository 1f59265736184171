"""`sources:` in the YAML: the issue's shape is accepted as written; every mistake names its key."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from fulfil.config import ConfigError, config_from_data

BASE: dict[str, Any] = {
    "suppliers": [
        {"name": "shelf", "type": "stock"},
        {"name": "fulu", "type": "fulu", "base_url": "http://127.0.0.1:1", "app_key": "k", "secret": "s"},
    ],
    "products": {
        "steam-100": {"offers": [{"supplier": "shelf"}]},
        "qq-vip-month": {"kind": "direct", "offers": [{"supplier": "fulu", "product_id": "10003"}]},
        "game-card": {"offers": [{"supplier": "shelf"}]},
    },
}

# The issue's config shape, verbatim apart from the elided URL.
ISSUE_SHAPE = """
sources:
  - name: shop                       # letters, digits, - _ .
    type: dujiaoka                   # dujiaoka | acg_faka_shop | a plug-in's type
    url: "mysql+asyncmy://fulfil:${SHOP_DB_PASSWORD}@127.0.0.1:3306/dujiaoka"
    poll_interval: 2s
    goods: {"12": steam-100, "13": qq-vip-month}   # shop goods id -> fulfil SKU
    account_field: "充值账号"          # dujiaoka: the info label; acg_faka_shop: the widget's name (e.g. account)
    rescue_abnormal: ["12"]           # dujiaoka only: also take type=1/status=6 orders of these goods
  - {name: faka, type: acg_faka_shop, url: "mysql+asyncmy://u@h/acgfaka", table_prefix: acg_, goods: {"3": game-card}}
"""


def load(sources: Any, environ: dict[str, str] | None = None) -> Any:
    return config_from_data({**BASE, "sources": sources}, environ=environ if environ is not None else {})


def errors(sources: Any, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(sources, environ)
    return caught.value.errors


def test_the_issue_shape_loads_with_the_secret_from_the_environment() -> None:
    data = yaml.safe_load(ISSUE_SHAPE)
    config = config_from_data({**BASE, **data}, environ={"SHOP_DB_PASSWORD": "s3cret"})
    shop, faka = config.sources
    assert shop.name == "shop" and shop.type == "dujiaoka"
    assert shop.url == "mysql+asyncmy://fulfil:s3cret@127.0.0.1:3306/dujiaoka"
    assert shop.poll_interval == 2.0
    assert shop.goods == {"12": "steam-100", "13": "qq-vip-month"}
    assert shop.account_field == "充值账号" and shop.rescue_abnormal == ("12",)
    assert shop.table_prefix is None  # the adapter's default ("" for dujiaoka)
    assert faka.type == "acg_faka_shop" and faka.table_prefix == "acg_" and faka.goods == {"3": "game-card"}
    assert config.source("faka") is faka


def test_integer_goods_ids_are_the_same_as_text() -> None:
    config = load(
        [{"name": "s", "type": "dujiaoka", "url": "mysql://u@h/d", "goods": {12: "steam-100"}, "rescue_abnormal": [12]}]
    )
    assert config.sources[0].goods == {"12": "steam-100"}
    assert config.sources[0].rescue_abnormal == ("12",)


def test_a_missing_secret_names_the_url() -> None:
    data = yaml.safe_load(ISSUE_SHAPE)
    with pytest.raises(ConfigError) as caught:
        config_from_data({**BASE, **data}, environ={})
    assert "sources[0].url: environment variable SHOP_DB_PASSWORD is not set" in caught.value.errors


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"type": "dujiaoka", "url": "mysql://u@h/d"}, "sources[0].name: Field required"),
        ({"name": "a b", "type": "dujiaoka", "url": "mysql://u@h/d"}, "sources[0].name: String should match"),
        ({"name": "s", "type": "dujiao", "url": "mysql://u@h/d"}, "sources[0].type: unknown source type 'dujiao'"),
        ({"name": "s", "type": "dujiaoka"}, "sources[0].url: Field required"),
        (
            {"name": "s", "type": "dujiaoka", "url": "postgresql://u@h/d"},
            "sources[0].url: a dujiaoka shop is on MySQL or MariaDB",
        ),
        ({"name": "s", "type": "dujiaoka", "url": "mysql://u@h/d", "poll_interval": 2}, "sources[0].poll_interval"),
        ({"name": "s", "type": "dujiaoka", "url": "mysql://u@h/d", "poll_interval": "0s"}, "must be at least 1ms"),
        (
            {"name": "s", "type": "dujiaoka", "url": "mysql://u@h/d", "goods": {"12": "nope"}},
            "sources[0].goods.12: unknown sku 'nope'",
        ),
        (
            {"name": "s", "type": "dujiaoka", "url": "mysql://u@h/d", "goods": {"x1": "steam-100"}},
            "sources[0].goods.x1: a goods id is the shop's numeric id",
        ),
        (
            {"name": "s", "type": "dujiaoka", "url": "mysql://u@h/d", "goods": {"13": "qq-vip-month"}},
            "sources[0].account_field: required: goods 13 -> qq-vip-month are direct top-ups",
        ),
        (
            {"name": "s", "type": "dujiaoka", "url": "mysql://u@h/d", "goods": {"12": "steam-100"},
             "rescue_abnormal": ["14"]},
            "sources[0].rescue_abnormal[0]: goods '14' is not in the goods map",
        ),
        (
            {"name": "s", "type": "acg_faka_shop", "url": "mysql://u@h/d", "goods": {"3": "game-card"},
             "rescue_abnormal": ["3"]},
            "sources[0].rescue_abnormal: only for dujiaoka",
        ),
        (
            {"name": "s", "type": "acg_faka_shop", "url": "mysql://u@h/d", "table_prefix": "acg_; DROP"},
            "sources[0].table_prefix: String should match pattern",
        ),
        (
            {"name": "s", "type": "dujiaoka", "url": "mysql://u@h/d", "push": {"allow": ["10.0.0.x"]}},
            "sources[0].push.allow[0]: not an IP address or network: '10.0.0.x'",
        ),
        (
            {"name": "s", "type": "dujiaoka", "url": "mysql://u@h/d", "push": {"secret": "short"}},
            "sources[0].push.secret: String should have at least 16 characters",
        ),
        ({"name": "s", "type": "dujiaoka", "url": "mysql://u@h/d", "goodz": {}}, "sources[0].goodz: Extra inputs"),
    ],
)  # fmt: skip
def test_each_mistake_names_its_key(entry: dict[str, Any], expected: str) -> None:
    found = errors([entry])
    assert any(error.startswith(expected) or expected in error for error in found), found


def test_duplicate_names_are_refused() -> None:
    entry = {"name": "s", "type": "dujiaoka", "url": "mysql://u@h/d"}
    assert "sources[1].name: duplicate source name 's'" in errors([entry, entry])


def test_every_mistake_at_once() -> None:
    found = errors(
        [
            {"name": "s", "type": "nope", "url": "mysql://u@h/d", "goods": {"1": "missing"}},
            {"name": "t", "type": "dujiaoka", "url": "sqlite:///x", "rescue_abnormal": ["9"]},
        ]
    )
    assert len(found) == 4, found
