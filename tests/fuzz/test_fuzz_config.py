"""Properties of the config loader: whatever file it is given, `load_config` returns a `Config` or raises
`ConfigError` whose every line names where the problem is (a field path, `(top level)`, or the file itself).
Nothing else escapes: no KeyError, TypeError, RecursionError or UnicodeDecodeError from a bad file.

Documents come from three places: arbitrary text and bytes; YAML built from the config's own vocabulary
(section and field names, durations, numbers, `${VAR}` references) so the validation past the YAML parser is
reached; and mutations of config/fulfil.example.yaml (a value replaced, a key dropped or added, a character
changed), which stay close to a real file.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fulfil.config import Config, ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "fulfil.example.yaml"
EXAMPLE_TEXT = EXAMPLE.read_text(encoding="utf-8")
EXAMPLE_DATA: dict[str, Any] = yaml.safe_load(EXAMPLE_TEXT)
ENVIRON = {"FULU_KEY": "k", "FULU_SECRET": "0123456789abcdef0123456789abcdef", "FAKA_APP_ID": "1", "FAKA_APP_KEY": "x"}
PROPERTY = settings(
    max_examples=150, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

# --- the vocabulary ------------------------------------------------------------------------------------

SECTIONS = ("database", "security", "daemon", "http", "retry", "ambiguity", "cooldown", "routing", "breaker",
            "scoring", "suppliers", "products")  # fmt: skip
FIELDS = ("url", "card_key_file", "poll_interval", "batch_size", "concurrency", "lease", "shutdown_timeout",
          "listen", "enabled", "token_env", "budget", "initial_backoff", "max_backoff", "policy", "late_keys",
          "strategy", "min_score", "name", "type", "base_url", "app_key", "app_id", "secret", "timeout",
          "max_response_bytes", "balance_floor", "options", "kind", "max_qty", "card_pattern", "number_pattern",
          "promise", "offers", "supplier", "product_id", "cost", "priority", "window")  # fmt: skip
durations = st.one_of(
    st.builds(lambda n, unit: f"{n}{unit}", st.integers(0, 10**6), st.sampled_from(["ms", "s", "m", "h", "d", "x"])),
    st.builds(lambda n, unit: f"{n}{unit}", st.integers(300, 400).map(lambda k: "9" * k), st.sampled_from(["s", "d"])),
    st.sampled_from(["", " 5s ", "1.5m", "-1s", "0s", "1e3s", "nan", "inf"]),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.floats(),
    st.text(max_size=30),
    durations,
    st.sampled_from(["${FULU_KEY}", "${MISSING}", "${MISSING:-d}", "${", "stock", "fulu", "acg_faka", "card",
                     "direct", "wait", "failover", "[A-Z", "(a+)+$", "sqlite:///x.db", "mysql://h/d", "h:99999",
                     "127.0.0.1:8089", "postgresql://u@h/d"]),  # fmt: skip
)
keys = st.one_of(st.sampled_from(SECTIONS + FIELDS), st.text(max_size=10), st.integers(-3, 3), st.none())
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=25,
)
documents = st.one_of(
    st.dictionaries(st.sampled_from(SECTIONS), values, max_size=6),
    values,
)


def _load(tmp_path: Path, content: str | bytes) -> Config | None:
    """`load_config` on a file with `content`; None when it was refused (checking how)."""
    path = tmp_path / "fulfil.yaml"
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8", errors="surrogatepass")
    else:
        path.write_bytes(content)
    try:
        config = load_config(path, environ=ENVIRON)
    except ConfigError as exc:
        assert exc.errors, "a ConfigError says what is wrong"
        for line in exc.errors:
            where, sep, what = line.partition(": ")
            assert sep and where.strip() and what.strip(), f"no path in {line!r}"
        return None
    assert isinstance(config, Config)
    _assert_durations_finite(config)
    return config


def _assert_durations_finite(config: Config) -> None:
    for section in (config.daemon, config.retry, config.ambiguity, config.cooldown, config.breaker, config.scoring,
                    *config.suppliers, *config.products.values()):  # fmt: skip
        for name, value in section:
            if isinstance(value, float):
                assert math.isfinite(value), f"{type(section).__name__}.{name} = {value}"


def _dump(data: Any) -> str:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


# --- properties ----------------------------------------------------------------------------------------


@PROPERTY
@given(text=st.text(max_size=400))
@example(text="a: [")  # not YAML
@example(text="&a [*a]")  # an alias inside itself
@example(text="products: &p {s: {offers: [*p]}}")  # ... below the top level
@example(text="suppliers: &s [{name: a, type: stock, options: {x: *s}}]")
@example(text="- 1\n- 2")  # not a mapping
@example(text="suppliers: " + "[" * 3000 + "]" * 3000)  # past PyYAML's recursion
@example(text="suppliers: [{name: a, type: stock, options: " + "[" * 600 + "]" * 600 + "}]")
@example(text="daemon: {poll_interval: 5s}\ndaemon: {lease: 1s}")  # a repeated key
def test_any_text_is_a_config_or_a_config_error(tmp_path_factory: Any, text: str) -> None:
    _load(tmp_path_factory.mktemp("cfg"), text)


@PROPERTY
@given(data=st.binary(max_size=200))
@example(data=b"database: {url: '\xff'}\n")  # not UTF-8
@example(data=b"\xef\xbb\xbfdaemon: {lease: 5s}\n")  # a UTF-8 byte order mark
def test_any_bytes_are_a_config_or_a_config_error(tmp_path_factory: Any, data: bytes) -> None:
    _load(tmp_path_factory.mktemp("cfg"), data)


@PROPERTY
@given(data=documents)
@example(data={"daemon": {"poll_interval": "9" * 400 + "d"}})  # a float overflow
@example(data={"products": {"s": {"card_pattern": "(" * 200 + ")" * 200, "offers": [{"supplier": "x"}]}}})
def test_documents_in_the_configs_vocabulary_are_a_config_or_a_config_error(tmp_path_factory: Any, data: Any) -> None:
    _load(tmp_path_factory.mktemp("cfg"), _dump(data))


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, (*prefix, i))
    return out


EXAMPLE_PATHS = _paths(EXAMPLE_DATA)[1:]


def _mutate(data: Any, path: tuple[Any, ...], action: str, value: Any) -> Any:
    import copy

    out = copy.deepcopy(data)
    parent = out
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    if action == "drop" and isinstance(parent, dict):
        del parent[last]
    elif action == "add" and isinstance(parent, dict):
        parent[f"{last}_extra"] = value
    else:
        parent[last] = value
    return out


@PROPERTY
@given(
    path=st.sampled_from(EXAMPLE_PATHS),
    action=st.sampled_from(["replace", "drop", "add"]),
    value=values,
)
def test_mutations_of_the_example_are_a_config_or_a_config_error(
    tmp_path_factory: Any, path: tuple[Any, ...], action: str, value: Any
) -> None:
    _load(tmp_path_factory.mktemp("cfg"), _dump(_mutate(EXAMPLE_DATA, path, action, value)))


@PROPERTY
@given(
    position=st.integers(0, len(EXAMPLE_TEXT) - 1),
    char=st.characters(codec="utf-8") | st.sampled_from(":-[]{}&*!|>'\"#%@` \t\n"),
)
def test_one_character_changed_in_the_example_is_a_config_or_a_config_error(
    tmp_path_factory: Any, position: int, char: str
) -> None:
    _load(tmp_path_factory.mktemp("cfg"), EXAMPLE_TEXT[:position] + char + EXAMPLE_TEXT[position + 1 :])


def test_the_example_itself_loads(tmp_path: Path) -> None:
    assert _load(tmp_path, EXAMPLE_TEXT) is not None


def test_a_refused_file_names_the_bad_fields_path(tmp_path: Path) -> None:
    data = _mutate(EXAMPLE_DATA, ("daemon", "batch_size"), "replace", "many")
    try:
        load_config(_write(tmp_path, _dump(data)), environ=ENVIRON)
    except ConfigError as exc:
        assert any(re.match(r"daemon\.batch_size: ", line) for line in exc.errors), exc.errors
    else:
        raise AssertionError("a batch_size of 'many' was accepted")


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fulfil.yaml"
    path.write_text(text, encoding="utf-8")
    return path
