from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Mapping
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crmsync.config.models import Flow
from crmsync.engine import transforms
from crmsync.engine.flows import FlowRuntime
from crmsync.engine.transforms import registry
from crmsync.errors import ConfigError, FixTheData

BUILT_INS = [
    "boolean",
    "checkbox",
    "constant",
    "date",
    "datetime",
    "dropdown",
    "email",
    "integer",
    "link",
    "lower",
    "number",
    "people",
    "phone",
    "split_name",
    "strip",
    "template",
    "text",
    "upper",
    "value_map",
]


def run(
    name: str, value: Any, args: Mapping[str, Any] | None = None, record: Mapping[str, Any] | None = None
) -> Any:
    return transforms.get(name)(value, args or {}, record or {})


# ---------------------------------------------------------------- registry


def test_every_built_in_is_registered_with_a_docstring_and_example() -> None:
    assert set(BUILT_INS) <= set(transforms.names())
    assert transforms.names() == sorted(transforms.names())
    for name in BUILT_INS:
        t = transforms.get(name)
        assert t.name == name
        assert t.summary, name
        assert "→" in t.doc, f"{name} has no example"


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        transforms.get("nubmer")
    assert "unknown transform 'nubmer'" in caught.value.message
    assert "number, people" in caught.value.message


def test_decorator_registers_and_refuses_a_second_function_under_the_same_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    @transforms.transform("reverse", optional=("keep",))
    def reverse(value: Any, args: Mapping[str, Any], record: Mapping[str, Any]) -> Any:
        """Reversed text. Example: ``"ab"`` → ``"ba"``."""
        return str(value)[::-1]

    assert transforms.get("reverse") is reverse
    assert reverse("abc") == "cba"
    assert "reverse" in transforms.names()
    with pytest.raises(ConfigError, match="registered twice"):
        transforms.transform("reverse")(lambda v, a, r: v)


def test_check_args_names_missing_and_unknown_args() -> None:
    assert transforms.get("constant").check_args({"value": 1}) == []
    assert transforms.get("constant").check_args({}) == ["transform 'constant' needs args.value"]
    assert transforms.get("upper").check_args({"x": 1}) == ["transform 'upper' takes no arg 'x'; valid: none"]
    assert transforms.get("number").check_args({"x": 1}) == [
        "transform 'number' takes no arg 'x'; valid: precision, scale"
    ]
    assert transforms.get("date").check_args({"fmt": 1}) == [
        "transform 'date' takes no arg 'fmt'; valid: default_days, format"
    ]


class _EntryPoint:
    def __init__(self, name: str, loaded: Any) -> None:
        self.name, self.value, self._loaded = name, f"plugin:{name}", loaded

    def load(self) -> Any:
        if isinstance(self._loaded, Exception):
            raise self._loaded
        return self._loaded


@pytest.fixture
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_plugins_loaded", False)


def test_plugins_are_imported_through_the_entry_point_group(
    monkeypatch: pytest.MonkeyPatch, fresh_registry: None
) -> None:
    groups: list[str] = []

    def fake_entry_points(*, group: str) -> list[_EntryPoint]:
        groups.append(group)

        @transforms.transform("shout")
        def shout(value: Any, args: Mapping[str, Any], record: Mapping[str, Any]) -> Any:
            return f"{value}!"

        return [_EntryPoint("shout", shout), _EntryPoint("module", ModuleType("plugin_module"))]

    monkeypatch.setattr(registry, "entry_points", fake_entry_points)
    assert transforms.get("shout")("hi") == "hi!"
    assert groups == ["crmsync.transforms"]
    transforms.names()
    assert groups == ["crmsync.transforms"], "plug-ins are loaded once"


@pytest.mark.parametrize(
    ("loaded", "message"),
    [(ImportError("no module named x"), "failed to load"), (lambda v, a, r: v, "must name a module")],
)
def test_a_broken_plugin_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, fresh_registry: None, loaded: Any, message: str
) -> None:
    monkeypatch.setattr(registry, "entry_points", lambda *, group: [_EntryPoint("bad", loaded)])
    with pytest.raises(ConfigError, match=message):
        transforms.names()
    with pytest.raises(ConfigError, match=message):
        transforms.get("number")


# ---------------------------------------------------------------- text


@pytest.mark.parametrize(
    ("value", "expected"),
    [("a", "a"), (42, "42"), (2.5, "2.5"), (True, "true"), ([1, "x"], '[1, "x"]'), (None, None)],
)
def test_text(value: Any, expected: Any) -> None:
    assert run("text", value) == expected


def test_text_max_length() -> None:
    assert run("text", "abc", {"max_length": 3}) == "abc"
    with pytest.raises(FixTheData, match="at most 3"):
        run("text", "abcd", {"max_length": 3})


def test_case_and_strip() -> None:
    assert run("lower", "ACME Ltd") == "acme ltd"
    assert run("upper", "gb") == "GB"
    assert run("strip", "  Ada ") == "Ada"
    assert run("strip", "   ") is None
    assert run("lower", None) is None


def test_constant_ignores_the_value() -> None:
    assert run("constant", "anything", {"value": "Web"}) == "Web"
    assert run("constant", None, {"value": 0}) == 0


def test_template_formats_the_whole_record() -> None:
    record = {"first": "Ada", "last": "Lovelace", "title": None}
    assert run("template", None, {"template": "{first} {last}"}, record) == "Ada Lovelace"
    assert run("template", None, {"template": "{title}{last}"}, record) == "Lovelace"
    with pytest.raises(FixTheData, match="needs field"):
        run("template", None, {"template": "{first} {middle}"}, record)
    with pytest.raises(FixTheData, match="cannot be formatted"):
        run("template", None, {"template": "{first:d}"}, record)


def test_value_map() -> None:
    args = {"map": {"Working on it": "Open", "Done": "Closed Won", "1": "One"}}
    assert run("value_map", "Done", args) == "Closed Won"
    assert run("value_map", 1, args) == "One"
    assert run("value_map", {"label": {"index": 1, "text": "Done"}}, args) == "Closed Won"
    assert run("value_map", '{"label": "Working on it"}', args) == "Open"
    assert run("value_map", "Stuck", {**args, "default": None}) is None
    assert run("value_map", None, args) is None
    with pytest.raises(FixTheData, match="not in the value map; known: Working on it, Done, 1"):
        run("value_map", "Stuck", args)


@pytest.mark.parametrize(
    ("value", "first", "last"),
    [
        ("Ada King Lovelace", "Ada King", "Lovelace"),
        ("Ada Lovelace", "Ada", "Lovelace"),
        ("  Cher ", None, "Cher"),
        ("", None, None),
        (None, None, None),
    ],
)
def test_split_name(value: Any, first: Any, last: Any) -> None:
    assert run("split_name", value, {"part": "first"}) == first
    assert run("split_name", value, {"part": "last"}) == last


def test_split_name_refuses_an_unknown_part() -> None:
    with pytest.raises(FixTheData, match="'first' or 'last'"):
        run("split_name", "Ada", {"part": "middle"})


# ---------------------------------------------------------------- numbers and truth


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("3", 3),
        (" 1,234.50 ", 1234.5),
        (7, 7),
        (2.5, 2.5),
        ("1e3", 1000),
        ('"42"', 42),
        ("", None),
        (None, None),
    ],
)
def test_number(value: Any, expected: Any) -> None:
    result = run("number", value)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize("value", ["three", True, "nan", "inf", [1]])
def test_number_refuses(value: Any) -> None:
    with pytest.raises(FixTheData, match="number"):
        run("number", value)


def test_integer() -> None:
    assert run("integer", "42") == 42
    assert run("integer", "4.0") == 4
    assert run("integer", None) is None
    with pytest.raises(FixTheData, match="not a whole number"):
        run("integer", "4.5")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Yes", True),
        ("no", False),
        ("1", True),
        (0, False),
        (True, True),
        ("off", False),
        ("v", True),
        (None, None),
    ],
)
def test_boolean(value: Any, expected: Any) -> None:
    assert run("boolean", value) is expected


@pytest.mark.parametrize("value", ["maybe", 2, 1.5])
def test_boolean_refuses(value: Any) -> None:
    with pytest.raises(FixTheData, match="yes/no"):
        run("boolean", value)


def test_checkbox_both_ways() -> None:
    assert run("checkbox", {"checked": "true", "changed_at": "2024-01-01"}) is True
    assert run("checkbox", '{"checked": "true"}') is True
    assert run("checkbox", {}) is False
    assert run("checkbox", True) == {"checked": "true"}
    assert run("checkbox", "no") is None
    assert run("checkbox", None) is None


# ---------------------------------------------------------------- dates


@pytest.mark.parametrize(
    ("value", "args", "expected"),
    [
        ("2024-05-01", {}, "2024-05-01"),
        ("2024-05-01T23:30:00Z", {}, "2024-05-01"),
        (dt.date(2024, 5, 1), {}, "2024-05-01"),
        (dt.datetime(2024, 5, 1, 10, 0), {}, "2024-05-01"),
        ({"date": "2025-02-05", "time": None, "changed_at": "x"}, {}, "2025-02-05"),
        ('{"date": "2025-02-05", "time": "10:30:00"}', {}, "2025-02-05"),
        ({"date": ""}, {}, None),
        ("01/05/2024", {"format": "%d/%m/%Y"}, "2024-05-01"),
        ("", {}, None),
    ],
)
def test_date(value: Any, args: dict[str, Any], expected: Any) -> None:
    assert run("date", value, args) == expected


@pytest.mark.parametrize(
    ("value", "args"), [("2024-13-01", {}), ("tomorrow", {}), ("2024-05-01", {"format": "%d/%m/%Y"}), (5, {})]
)
def test_date_refuses(value: Any, args: dict[str, Any]) -> None:
    with pytest.raises(FixTheData):
        run("date", value, args)


@pytest.mark.parametrize(
    ("value", "args", "expected"),
    [
        ("2024-05-01T12:30:00+02:00", {}, "2024-05-01T10:30:00+00:00"),
        ("2024-05-01T10:30:00Z", {"format": "salesforce"}, "2024-05-01T10:30:00.000+0000"),
        ("2024-05-01T10:30:00.123+0000", {"format": "salesforce"}, "2024-05-01T10:30:00.123+0000"),
        ("2024-05-01T10:30:00", {}, "2024-05-01T10:30:00+00:00"),
        ("2024-05-01", {"format": "salesforce"}, "2024-05-01T00:00:00.000+0000"),
        (0, {}, "1970-01-01T00:00:00+00:00"),
        (
            {"date": "2025-02-05", "time": "10:30:00"},
            {"format": "salesforce"},
            "2025-02-05T10:30:00.000+0000",
        ),
        (dt.date(2024, 5, 1), {}, "2024-05-01T00:00:00+00:00"),
        (None, {}, None),
    ],
)
def test_datetime(value: Any, args: dict[str, Any], expected: Any) -> None:
    assert run("datetime", value, args) == expected


@pytest.mark.parametrize(
    ("value", "args", "match"),
    [
        ("yesterday", {}, "ISO date and time"),
        (True, {}, "date and time"),
        ("2024-05-01", {"format": "x"}, "'iso' or"),
    ],
)
def test_datetime_refuses(value: Any, args: dict[str, Any], match: str) -> None:
    with pytest.raises(FixTheData, match=match):
        run("datetime", value, args)


# ---------------------------------------------------------------- contact details


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (" Ada@Example.COM ", "Ada@example.com"),
        ("mailto:ada@example.com", "ada@example.com"),
        ({"email": "ada@example.com", "text": "Ada"}, "ada@example.com"),
        ("", None),
    ],
)
def test_email(value: Any, expected: Any) -> None:
    assert run("email", value) == expected


@pytest.mark.parametrize("value", ["ada@", "ada", "a b@example.com", "ada@example"])
def test_email_refuses(value: str) -> None:
    with pytest.raises(FixTheData, match="not an e-mail address"):
        run("email", value)


@pytest.mark.parametrize(
    ("value", "args", "expected"),
    [
        ("+1 (555) 123-4567", {}, "+15551234567"),
        ("0044 20 7946 0018", {}, "+442079460018"),
        ("(0)20 7946-0018", {"country_code": "44"}, "+442079460018"),
        ("020 7946 0018", {}, "02079460018"),
        ({"phone": "+15551234567", "countryShortName": "US"}, {}, "+15551234567"),
        (None, {}, None),
    ],
)
def test_phone(value: Any, args: dict[str, Any], expected: Any) -> None:
    assert run("phone", value, args) == expected


@pytest.mark.parametrize("value", ["call me", "123", "+1234567890123456"])
def test_phone_refuses(value: str) -> None:
    with pytest.raises(FixTheData, match="not a phone number"):
        run("phone", value)


# ---------------------------------------------------------------- Monday shapes


def test_link_both_ways() -> None:
    assert run("link", {"url": "https://acme.example", "text": "Acme"}) == "https://acme.example"
    assert run("link", '{"url": "https://acme.example", "text": "Acme"}') == "https://acme.example"
    assert run("link", {"url": ""}) is None
    assert run("link", "https://acme.example") == {
        "url": "https://acme.example",
        "text": "https://acme.example",
    }
    assert run("link", "https://acme.example", {"text": "Site"}) == {
        "url": "https://acme.example",
        "text": "Site",
    }
    with pytest.raises(FixTheData, match="not a URL"):
        run("link", "acme dot example")


def test_people_both_ways() -> None:
    value = {"personsAndTeams": [{"id": 7, "kind": "person"}, {"id": 9, "kind": "team"}], "changed_at": "x"}
    assert run("people", value) == ["7"]
    assert run("people", value, {"kind": "team"}) == ["9"]
    assert run("people", value, {"emails": {7: "ada@example.com"}}) == ["ada@example.com"]
    assert run("people", '{"personsAndTeams": []}') == []
    assert run("people", [7, "8"]) == {
        "personsAndTeams": [{"id": 7, "kind": "person"}, {"id": 8, "kind": "person"}]
    }
    assert run("people", "7, 8") == {
        "personsAndTeams": [{"id": 7, "kind": "person"}, {"id": 8, "kind": "person"}]
    }
    with pytest.raises(FixTheData, match="no e-mail known for user id"):
        run("people", value, {"emails": {}})
    with pytest.raises(FixTheData, match="not a Monday user id"):
        run("people", ["ada"])


def test_dropdown_both_ways() -> None:
    assert run("dropdown", {"labels": ["Web", "Mobile"]}) == "Web;Mobile"
    assert run("dropdown", {"chosenValues": [{"id": 1, "name": "Web"}]}) == "Web"
    assert run("dropdown", {"labels": []}) is None
    assert run("dropdown", "Web;Mobile") == {"labels": ["Web", "Mobile"]}
    assert run("dropdown", ["Web", " Mobile "]) == {"labels": ["Web", "Mobile"]}
    assert run("dropdown", "Web, Mobile", {"separator": ","}) == {"labels": ["Web", "Mobile"]}
    with pytest.raises(FixTheData, match="'labels' or 'chosenValues'"):
        run("dropdown", {"ids": [1]})


def test_date_default_days_fills_an_empty_value() -> None:
    today = dt.datetime.now(dt.UTC).date()
    assert (
        transforms.get("date")(None, {"default_days": 30}, {}) == (today + dt.timedelta(days=30)).isoformat()
    )
    assert transforms.get("date")("2024-05-01", {"default_days": 30}, {}) == "2024-05-01"


# ---------------------------------------------------------------- bounds: any input, bounded time, FixTheData


@pytest.mark.parametrize("value", ["1e5000", "1e1000000", "-1e39", 10**39, 10**300, "9" * 101, "sNaN"])
def test_number_refuses_what_no_field_can_hold_without_building_it(value: Any) -> None:
    started = time.perf_counter()
    with pytest.raises(FixTheData, match=r"digits|not a number"):
        run("number", value)
    assert time.perf_counter() - started < 0.1


def test_number_keeps_the_widest_values_a_field_can_hold() -> None:
    assert run("number", "9" * 38) == int("9" * 38)
    assert run("number", "0e999999999") == 0
    assert run("number", "1e-999999999") == 0.0
    assert run("integer", "-" + "9" * 38) == -int("9" * 38)


def test_number_precision_and_scale_round_decimals_and_refuse_whole_digits() -> None:
    money = {"precision": 18, "scale": 2}
    assert run("number", "1.555", money) == 1.56
    assert run("number", "9" * 16, money) == int("9" * 16)
    with pytest.raises(FixTheData, match="at most 16 digit"):
        run("number", "1" + "0" * 16, money)
    with pytest.raises(FixTheData, match="at most 2 digit"):
        run("number", "99.995", {"precision": 4, "scale": 2})  # rounds up to 100.00
    assert run("integer", "123456789", {"precision": 9}) == 123456789
    with pytest.raises(FixTheData, match="at most 9 digit"):
        run("integer", "1e9", {"precision": 9})


@pytest.mark.parametrize(
    ("name", "value", "args"),
    [
        ("number", float("nan"), {}),
        ("number", float("inf"), {}),
        ("integer", float("-inf"), {}),
        ("datetime", 1e20, {}),
        ("datetime", float("nan"), {}),
        ("datetime", -1e12, {}),
        ("value_map", "[1]", {"map": {"a": 1}}),
        ("value_map", [1], {"map": {"a": 1}}),
        ("text", 10**4000, {}),
        ("text", "x" * 10_000_000, {}),
        ("upper", "x" * 10_000_000, {}),
        ("checkbox", "[" * 100_000, {}),
        ("dropdown", '{"labels": 5}', {}),
        ("dropdown", {"chosenValues": 5}, {}),
        ("people", '{"personsAndTeams": 5}', {}),
        ("people", "1" * 5000, {}),
        ("email", "a@" + "b." * 5_000_000, {}),
        ("link", "h" * 10_000_000, {}),
        ("phone", "1" * 10_000_000, {}),
        ("date", "2024-01-01" * 1_000_000, {}),
        ("boolean", "y" * 10_000_000, {}),
        ("template", "x", {"template": "{a}"}),
    ],
)
def test_bad_input_is_fix_the_data_quickly(name: str, value: Any, args: dict[str, Any]) -> None:
    started = time.perf_counter()
    with pytest.raises(FixTheData) as caught:
        run(name, value, args, {"a": "x" * 200_000})
    assert time.perf_counter() - started < 0.5
    assert len(caught.value.message) < 500  # a refusal never quotes the value back in full


def test_a_plugin_error_is_fix_the_data_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    @transforms.transform("explodes")
    def explodes(value: Any, args: Mapping[str, Any], record: Mapping[str, Any]) -> Any:
        return {}[value]

    with pytest.raises(FixTheData, match="transform 'explodes' cannot read 'k'"):
        transforms.get("explodes")("k")


def test_a_flow_names_the_field_a_transform_refused() -> None:
    config = Flow.model_validate(
        {
            "source": "app",
            "target": "salesforce",
            "object": "Usage__c",
            "key": "ad_id",
            "fields": [{"source": "quantity", "target": "Quantity__c", "transform": "number"}],
        }
    )
    flow = FlowRuntime("usage", config)
    with pytest.raises(FixTheData) as caught:
        flow.to_target("ad-1", {"quantity": "1e5000"})
    assert caught.value.message.startswith("field 'quantity': ")
    assert caught.value.record == "ad-1" and caught.value.object_name == "Usage__c"


_odd_text = st.text(st.characters(codec=None), max_size=50) | st.sampled_from(
    [
        "1e5000",
        "-1e1000000",
        "NaN",
        "Infinity",
        "-0",
        "\u0000",
        "\ud800",
        "१२३",
        "\u0663.\u0665",  # Arabic-Indic 3.5
        "1_000",
        "0x10",
        "[[[",
        "{}",
    ]
)
_any_value = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**60), max_value=10**60)
    | st.floats()
    | st.decimals()
    | _odd_text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_odd_text, children, max_size=3),
    max_leaves=8,
)
_ARGS: dict[str, dict[str, Any]] = {
    "constant": {"value": 1},
    "template": {"template": "{a} {b}"},
    "value_map": {"map": {"a": "A", "1": "one"}},
    "split_name": {"part": "last"},
    "number": {"precision": 10, "scale": 2},
    "text": {"max_length": 40},
}


@settings(max_examples=400, deadline=None)
@given(name=st.sampled_from(BUILT_INS), value=_any_value, other=_any_value)
def test_every_built_in_returns_or_refuses_with_fix_the_data_in_bounded_time(
    name: str, value: Any, other: Any
) -> None:
    started = time.perf_counter()
    with contextlib.suppress(FixTheData):
        run(name, value, _ARGS.get(name, {}), {"a": value, "b": other})
    assert time.perf_counter() - started < 0.5
