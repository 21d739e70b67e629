"""The SOQL engine of the Salesforce emulator, against an in-memory record source."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crmsync.sandbox.salesforce.ids import make_id
from crmsync.sandbox.salesforce.soql import (
    And,
    ChildRelationshipSource,
    Comparison,
    Count,
    DescribedQuerySource,
    FieldPath,
    InList,
    Like,
    Not,
    Or,
    Query,
    QueryResult,
    RecordTypeSource,
    RelativeDate,
    SoqlError,
    execute,
    parse,
)
from crmsync.sandbox.salesforce.soql_eval import relative_range

NOW = datetime(2024, 5, 15, 10, 30, tzinfo=UTC)  # a Wednesday

SCHEMA: dict[str, dict[str, str]] = {
    "User": {"Id": "id", "Name": "string", "IsDeleted": "boolean"},
    "Account": {
        "Id": "id",
        "Name": "string",
        "Industry": "picklist",
        "AnnualRevenue": "currency",
        "NumberOfEmployees": "int",
        "IsDeleted": "boolean",
        "Active__c": "boolean",
        "CreatedDate": "datetime",
        "Founded__c": "date",
        "Tags__c": "multipicklist",
        "OwnerId": "reference",
        "Website": "url",
    },
    "Contract": {
        "Id": "id",
        "AccountId": "reference",
        "Status": "picklist",
        "StartDate": "date",
        "IsDeleted": "boolean",
    },
    "Usage__c": {
        "Id": "id",
        "Name": "string",
        "Contract__c": "reference",
        "Related__c": "reference",  # polymorphic: Account or Contract
        "Quantity__c": "double",
        "IsDeleted": "boolean",
        "CreatedDate": "datetime",
    },
}
RELATIONSHIPS = {
    ("Account", "Owner"): ("OwnerId", "User"),
    ("Contract", "Account"): ("AccountId", "Account"),
    ("Usage__c", "Contract__r"): ("Contract__c", "Contract"),
    ("Usage__c", "Related__r"): ("Related__c", "Account"),
}
CHILDREN = {
    ("Account", "contracts"): ("Contracts", "Contract", "AccountId"),
    ("Contract", "usages__r"): ("Usages__r", "Usage__c", "Contract__c"),
}
PREFIX = {"User": "005", "Account": "001", "Contract": "800", "Usage__c": "a0A"}


class FakeSource:
    """Case-sensitive like a plain dict store; records keyed by canonical field names."""

    api_version = "66.0"

    def __init__(self) -> None:
        self.records: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in SCHEMA}
        self.counter = 0

    def add(self, obj: str, **values: Any) -> str:
        self.counter += 1
        record_id = make_id(PREFIX[obj], self.counter)
        row: dict[str, Any] = dict.fromkeys(SCHEMA[obj])
        row.update({"Id": record_id, "IsDeleted": False} | values)
        assert set(row) == set(SCHEMA[obj]), set(row) - set(SCHEMA[obj])
        self.records[obj][record_id] = row
        return record_id

    def object_exists(self, object_name: str) -> bool:
        return object_name in SCHEMA

    def field_type(self, object_name: str, field: str) -> str | None:
        return SCHEMA.get(object_name, {}).get(field)

    def relationship(self, object_name: str, relationship_name: str) -> tuple[str, str] | None:
        return RELATIONSHIPS.get((object_name, relationship_name))

    def rows(self, object_name: str, include_deleted: bool) -> Iterable[Mapping[str, Any]]:
        rows = self.records[object_name].values()
        return rows if include_deleted else (r for r in rows if not r["IsDeleted"])

    def get(self, object_name: str, record_id: str) -> Mapping[str, Any] | None:
        # by the id's prefix, as a polymorphic reference may point at another object than declared
        return next((t[record_id] for t in self.records.values() if record_id in t), None)


class DescribedSource(FakeSource):
    """Also answers the optional describe questions (canonical object and field names)."""

    def field_names(self, object_name: str) -> Iterable[str]:
        return SCHEMA[object_name]

    def object_names(self) -> Iterable[str]:
        return SCHEMA

    def child_relationship(self, object_name: str, relationship_name: str) -> tuple[str, str, str] | None:
        return CHILDREN.get((object_name, relationship_name.lower()))

    def object_of(self, record_id: str) -> str | None:
        return next(obj for obj, prefix in PREFIX.items() if record_id.startswith(prefix))


@pytest.fixture
def src() -> DescribedSource:
    s = DescribedSource()
    ada = s.add("User", Name="Ada")
    acme = s.add(
        "Account",
        Name="Acme",
        Industry="Energy",
        AnnualRevenue=1000.5,
        NumberOfEmployees=50,
        Active__c=True,
        CreatedDate="2024-05-15T08:00:00.000+0000",
        Founded__c="1999-01-01",
        Tags__c="Gold;Partner",
        OwnerId=ada,
    )
    globex = s.add(
        "Account",
        Name="Globex",
        Industry="Retail",
        AnnualRevenue=20,
        NumberOfEmployees=5,
        Active__c=False,
        CreatedDate="2024-05-14T23:59:59.000+0000",
        Founded__c="2024-05-01",
        Tags__c="Silver",
    )
    s.add(
        "Account",
        Name="initech",
        Industry=None,
        AnnualRevenue=None,
        NumberOfEmployees=None,
        CreatedDate="2024-04-10T12:00:00.000+0000",
        Founded__c="2024-04-30",
    )
    s.add("Account", Name="Deleted Co", IsDeleted=True, CreatedDate="2024-01-01T00:00:00.000+0000")
    c1 = s.add("Contract", AccountId=acme, Status="Fulfilled", StartDate="2024-01-01")
    c2 = s.add("Contract", AccountId=globex, Status="Draft", StartDate="2024-06-01")
    c3 = s.add("Contract", AccountId=None, Status="Draft", StartDate=None)
    s.add("Usage__c", Name="U1", Contract__c=c1, Quantity__c=3.0, CreatedDate="2024-05-15T00:00:00.000+0000")
    s.add("Usage__c", Name="U2", Contract__c=c2, Quantity__c=1.0, CreatedDate="2024-05-10T00:00:00.000+0000")
    s.add("Usage__c", Name="U3", Contract__c=c3, Quantity__c=None, CreatedDate=None)
    s.add("Usage__c", Name="U4", Contract__c=None, Quantity__c=7, CreatedDate="2024-03-01T00:00:00.000+0000")
    return s


def run(source: FakeSource, text: str, **kw: Any) -> QueryResult:
    return execute(parse(text), source, now=NOW, **kw)


def names(source: FakeSource, text: str) -> list[str]:
    return [r["Name"] for r in run(source, text).records]


def error(source: FakeSource, text: str) -> SoqlError:
    with pytest.raises(SoqlError) as info:
        run(source, text)
    return info.value


def where(source: FakeSource, condition: str, obj: str = "Account") -> set[str]:
    return {r["Name"] for r in run(source, f"SELECT Name FROM {obj} WHERE {condition}").records}


# -- parsing -----------------------------------------------------------------------------------


def test_parse_builds_the_query_tree() -> None:
    q = parse(
        "SELECT Id, Account.Name FROM Contract WHERE (Status = 'Draft' OR Status IN ('A', 'B')) "
        "AND NOT Account.Name LIKE 'a%' ORDER BY StartDate DESC NULLS FIRST, Id LIMIT 10 OFFSET 5"
    )
    assert q.object_name == "Contract"
    assert isinstance(q.select[1], FieldPath) and q.select[1].parts == ("Account", "Name")
    assert isinstance(q.where, And)
    first, second = q.where.items
    assert (
        isinstance(first, Or)
        and isinstance(first.items[0], Comparison)
        and isinstance(first.items[1], InList)
    )
    assert isinstance(second, Not) and isinstance(second.item, Like)
    assert [(o.path.text, o.descending, o.effective_nulls_first) for o in q.order_by] == [
        ("StartDate", True, True),
        ("Id", False, True),
    ]
    assert (q.limit, q.offset, q.count_only) == (10, 5, False)


def test_keywords_are_case_insensitive_and_parse_is_cached() -> None:
    text = "select id from account where name = 'x' order by name desc nulls last limit 1"
    q = parse(text)
    assert parse(text) is q
    assert q.order_by[0].descending and not q.order_by[0].effective_nulls_first


def test_keyword_like_names_are_names() -> None:
    q = parse("SELECT Id, Limit__c, Count__c, Order__c FROM Order WHERE Nulls__c = null")
    assert q.object_name == "Order"
    assert [s.text for s in q.select if isinstance(s, FieldPath)] == [
        "Id",
        "Limit__c",
        "Count__c",
        "Order__c",
    ]


def test_count_forms() -> None:
    assert parse("SELECT COUNT() FROM Account").count_only
    item = parse("SELECT count(Id) total FROM Account").select[0]
    assert isinstance(item, Count) and item.alias == "total" and item.path is not None


@pytest.mark.parametrize(
    ("text", "column", "detail"),
    [
        ("SELECT Id FROM Account WHERE", 29, "unexpected token: '<EOF>'"),
        ("SELECT Id FROM Account WHERE Name = Foo", 37, "unexpected token: 'Foo'"),
        ("SELECT Id FROM Account WHERE A = 1 AND B = 2 OR C = 3", 46, "unexpected token: 'OR'"),
        ("SELECT Id FROM Account WHERE A = 1 OR B = 2 AND C = 3", 45, "unexpected token: 'AND'"),
        ("SELECT Id Account", 11, "unexpected token: 'Account'"),
        ("SELECT Id FROM Account LIMIT 'x'", 30, "unexpected token: ''x''"),
        (
            "SELECT Id FROM Account WHERE Name = 'abc",
            37,
            "line 1:37 mismatched character '<EOF>' expecting '''",
        ),
        ("SELECT Id FROM Account WHERE Amount LIKE 5", 42, "unexpected token: '5'"),
        ("SELECT Id FROM Account WHERE Id IN ()", 37, "unexpected token: ')'"),
    ],
)
def test_syntax_errors_are_malformed_query_located_like_salesforce(
    text: str, column: int, detail: str
) -> None:
    with pytest.raises(SoqlError) as info:
        parse(text)
    err = info.value
    assert err.error_code == "MALFORMED_QUERY"
    assert err.detail == detail
    assert err.message == f"\n{text}\n{' ' * (column - 1)}^\nERROR at Row:1:Column:{column}\n{detail}"


def test_error_row_and_column_on_multi_line_queries() -> None:
    with pytest.raises(SoqlError) as info:
        parse("SELECT Id\nFROM Account\nWHERE Name = = 'x'")
    assert "ERROR at Row:3:Column:14" in info.value.message
    assert info.value.message.startswith("\nWHERE Name = = 'x'\n             ^\n")


def test_empty_and_overlong_queries() -> None:
    for text in ("", "   "):
        with pytest.raises(SoqlError, match="unexpected token"):
            parse(text)
    with pytest.raises(SoqlError) as info:
        parse("SELECT Id FROM Account WHERE Name = '" + "x" * 100_000 + "'")
    assert info.value.error_code == "MALFORMED_QUERY"


def test_offset_above_2000_is_refused() -> None:
    parse("SELECT Id FROM Account OFFSET 2000")
    with pytest.raises(SoqlError) as info:
        parse("SELECT Id FROM Account OFFSET 2001")
    assert info.value.error_code == "NUMBER_OUTSIDE_VALID_RANGE"
    assert info.value.message == "Maximum SOQL offset allowed is 2000"


# -- string literals ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        (r"'it\'s'", "it's"),
        (r"'say \"hi\"'", 'say "hi"'),
        (r"'back\\slash'", "back\\slash"),
        (r"'a\nb\rc\td\be\ff'", "a\nb\rc\td\be\ff"),
        (r"'caf\u00e9 \u00C9'", "café É"),
        ("'plain % and _'", "plain % and _"),
        ("''", ""),
    ],
)
def test_valid_string_escapes(literal: str, value: str) -> None:
    q = parse(f"SELECT Id FROM Account WHERE Name = {literal}")
    assert isinstance(q.where, Comparison)
    assert q.where.value.value == value


@pytest.mark.parametrize(
    ("literal", "bad"),
    [(r"'a\qb'", r"\q"), (r"'\%'", r"\%"), (r"'\_x'", r"\_"), (r"'\u12g4'", r"\u12g4"), (r"'\a'", r"\a")],
)
def test_other_backslashes_are_malformed(literal: str, bad: str) -> None:
    text = f"SELECT Id FROM Account WHERE Name = {literal}"
    with pytest.raises(SoqlError) as info:
        parse(text)
    err = info.value
    assert err.error_code == "MALFORMED_QUERY"
    assert (
        err.detail
        == f"Invalid string literal '{literal[1:-1]}'. Illegal character sequence '{bad}' in string literal."
    )
    assert "ERROR at Row:1:Column:37" in err.message


def test_like_escapes_and_wildcards(src: FakeSource) -> None:
    src.add("Account", Name="50% off_now")
    src.add("Account", Name="50X offXnow")
    assert where(src, "Name LIKE 'ac%'") == {"Acme"}
    assert where(src, "Name LIKE '%E%'") == {"Acme", "Globex", "initech"}
    assert where(src, "Name LIKE '%'") == {"Acme", "Globex", "initech", "50% off_now", "50X offXnow"}
    assert where(src, "Name LIKE 'G_obex'") == {"Globex"}
    assert where(src, "Name LIKE 'G_bex'") == set()
    assert where(src, r"Name LIKE '50\% off\_now'") == {"50% off_now"}
    assert where(src, "Name LIKE '50_ off_now'") == {"50% off_now", "50X offXnow"}
    assert where(src, r"Name LIKE '%\\%'") == set()
    assert where(src, "NOT Name LIKE '%e%'") == {"50% off_now", "50X offXnow"}
    assert where(src, "Name LIKE 'a.c%'") == set()  # regex characters are literal


def test_like_on_a_number_field_is_refused(src: FakeSource) -> None:
    err = error(src, "SELECT Id FROM Account WHERE AnnualRevenue LIKE '1%'")
    assert err.error_code == "INVALID_FIELD"


# -- operators ---------------------------------------------------------------------------------


def test_equality_on_text_is_case_insensitive(src: FakeSource) -> None:
    assert where(src, "Name = 'ACME'") == {"Acme"}
    assert where(src, "Name != 'acme'") == {"Globex", "initech"}
    assert where(src, "Name <> 'acme'") == {"Globex", "initech"}
    assert where(src, "Industry = 'energy'") == {"Acme"}


def test_text_ordering_operators(src: FakeSource) -> None:
    assert where(src, "Name < 'b'") == {"Acme"}
    assert where(src, "Name >= 'globex'") == {"Globex", "initech"}
    assert where(src, "Name > 'Globex'") == {"initech"}
    assert where(src, "Name <= 'GLOBEX'") == {"Acme", "Globex"}


def test_number_operators(src: FakeSource) -> None:
    assert where(src, "AnnualRevenue = 20") == {"Globex"}
    assert where(src, "AnnualRevenue = 20.0") == {"Globex"}
    assert where(src, "AnnualRevenue > 20") == {"Acme"}
    assert where(src, "AnnualRevenue >= 20") == {"Acme", "Globex"}
    assert where(src, "AnnualRevenue < 1000.5") == {"Globex"}
    assert where(src, "AnnualRevenue <= 1000.5") == {"Acme", "Globex"}
    assert where(src, "AnnualRevenue != 20") == {"Acme", "initech"}  # != matches nulls
    assert where(src, "NumberOfEmployees > -1") == {"Acme", "Globex"}
    assert where(src, "NumberOfEmployees IN (5, 50)") == {"Acme", "Globex"}
    assert where(src, "NumberOfEmployees NOT IN (5)") == {"Acme", "initech"}


def test_null_comparisons(src: FakeSource) -> None:
    assert where(src, "Industry = null") == {"initech"}
    assert where(src, "Industry != null") == {"Acme", "Globex"}
    assert where(src, "AnnualRevenue = NULL") == {"initech"}
    assert where(src, "AnnualRevenue > null") == set()
    assert where(src, "Industry IN ('Energy', null)") == {"Acme", "initech"}
    assert where(src, "Industry = ''") == {"initech"}  # an empty string is null in Salesforce


def test_boolean_comparisons_and_null_is_false(src: FakeSource) -> None:
    assert where(src, "Active__c = true") == {"Acme"}
    assert where(src, "Active__c = FALSE") == {"Globex", "initech"}
    assert where(src, "Active__c = null") == {"Globex", "initech"}
    assert where(src, "Active__c != null") == {"Acme"}


def test_in_and_not_in_on_text(src: FakeSource) -> None:
    assert where(src, "Name IN ('acme', 'GLOBEX', 'nobody')") == {"Acme", "Globex"}
    assert where(src, "Name NOT IN ('acme')") == {"Globex", "initech"}
    assert where(src, "Industry NOT IN ('Energy')") == {"Globex", "initech"}


def test_logic(src: FakeSource) -> None:
    assert where(src, "Name = 'Acme' OR Name = 'Globex' OR Name = 'x'") == {"Acme", "Globex"}
    assert where(src, "Name LIKE '%e%' AND Industry != null AND AnnualRevenue > 100") == {"Acme"}
    assert where(src, "NOT Name = 'Acme'") == {"Globex", "initech"}
    assert where(src, "NOT (Name = 'Acme' OR Name = 'Globex')") == {"initech"}
    assert where(src, "(Name = 'Acme' OR Name = 'initech') AND (Industry = null OR Industry = 'Retail')") == {
        "initech"
    }
    assert where(src, "((Name = 'Acme'))") == {"Acme"}


def test_multipicklist_equals_includes_excludes(src: FakeSource) -> None:
    assert where(src, "Tags__c = 'partner;gold'") == {"Acme"}
    assert where(src, "Tags__c = 'Gold'") == set()
    assert where(src, "Tags__c INCLUDES ('Gold')") == {"Acme"}
    assert where(src, "Tags__c INCLUDES ('Silver', 'Gold;Bronze')") == {"Globex"}
    assert where(src, "Tags__c INCLUDES ('gold;partner')") == {"Acme"}
    assert where(src, "Tags__c EXCLUDES ('Gold')") == {"Globex", "initech"}
    assert error(src, "SELECT Id FROM Account WHERE Name INCLUDES ('x')").error_code == "INVALID_FIELD"


def test_ids_accept_15_and_18_characters_and_reject_others(src: FakeSource) -> None:
    acme = next(r["Id"] for r in src.rows("Account", False) if r["Name"] == "Acme")
    assert where(src, f"Id = '{acme}'") == {"Acme"}
    assert where(src, f"Id = '{acme[:15]}'") == {"Acme"}
    assert where(src, f"Id IN ('{acme[:15]}', '{acme.lower()[:15]}')") == {"Acme"}
    assert where(src, f"Id = '{acme.upper()}'") == {"Acme"}
    assert where(src, f"Id != '{acme}'") == {"Globex", "initech"}
    assert len(run(src, f"SELECT Id FROM Contract WHERE AccountId = '{acme}'").records) == 1
    assert len(run(src, "SELECT Id FROM Contract WHERE AccountId = null").records) == 1
    err = error(src, "SELECT Id FROM Account WHERE Id = 'nope'")
    assert err.error_code == "INVALID_QUERY_FILTER_OPERATOR"
    assert err.detail == "invalid ID field: nope"


# -- types of filter values --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "detail"),
    [
        ("CreatedDate > 2024-01-01", "must be of type dateTime and should not be enclosed in quotes"),
        (
            "CreatedDate > '2024-01-01T00:00:00Z'",
            "must be of type dateTime and should not be enclosed in quotes",
        ),
        ("Founded__c = '2024-01-01'", "must be of type date and should not be enclosed in quotes"),
        ("Founded__c = 2024-01-01T00:00:00Z", "must be of type date and should not be enclosed in quotes"),
        ("Name = 5", "must be of type string and should be enclosed in quotes"),
        ("Name = true", "must be of type string and should be enclosed in quotes"),
        ("Name = TODAY", "must be of type string and should be enclosed in quotes"),
        ("AnnualRevenue = '5'", "must be of type double and should not be enclosed in quotes"),
        ("NumberOfEmployees = '5'", "must be of type integer and should not be enclosed in quotes"),
        ("Active__c = 'true'", "must be of type boolean and should not be enclosed in quotes"),
        ("NumberOfEmployees IN (5, '6')", "must be of type integer and should not be enclosed in quotes"),
    ],
)
def test_ill_typed_filter_values_are_invalid_field(src: FakeSource, condition: str, detail: str) -> None:
    err = error(src, f"SELECT Id FROM Account WHERE {condition}")
    assert err.error_code == "INVALID_FIELD"
    field = condition.split()[0]
    assert err.detail == f"value of filter criterion for field '{field}' {detail}"


def test_date_field_against_date_literals(src: FakeSource) -> None:
    assert where(src, "Founded__c = 1999-01-01") == {"Acme"}
    assert where(src, "Founded__c > 2024-04-30") == {"Globex"}
    assert where(src, "Founded__c >= 2024-04-30") == {"Globex", "initech"}
    assert where(src, "Founded__c < 2024-04-30") == {"Acme"}
    assert where(src, "Founded__c IN (1999-01-01, 2024-05-01)") == {"Acme", "Globex"}


def test_datetime_field_against_instants_with_offsets(src: FakeSource) -> None:
    assert where(src, "CreatedDate = 2024-05-15T08:00:00Z") == {"Acme"}
    assert where(src, "CreatedDate = 2024-05-15T10:00:00+02:00") == {"Acme"}
    assert where(src, "CreatedDate = 2024-05-15T00:00:00-08:00") == {"Acme"}
    assert where(src, "CreatedDate = 2024-05-15T08:00:00.000Z") == {"Acme"}
    assert where(src, "CreatedDate = 2024-05-15T08:00:00.000+0000") == {"Acme"}
    assert where(src, "CreatedDate > 2024-05-14T23:59:59Z") == {"Acme"}
    assert where(src, "CreatedDate >= 2024-05-14T23:59:59.000Z") == {"Acme", "Globex"}
    assert where(src, "CreatedDate < 2024-05-01T00:00:00+01:00") == {"initech"}


def test_invalid_calendar_dates_are_malformed() -> None:
    for text in (
        "SELECT Id FROM Account WHERE Founded__c = 2024-13-01",
        "SELECT Id FROM Account WHERE CreatedDate = 2024-02-30T00:00:00Z",
    ):
        with pytest.raises(SoqlError) as info:
            parse(text)
        assert info.value.error_code == "MALFORMED_QUERY"


# -- relative dates ----------------------------------------------------------------------------


def test_relative_dates_on_datetime_fields(src: FakeSource) -> None:
    assert where(src, "CreatedDate = TODAY") == {"Acme"}
    assert where(src, "CreatedDate = yesterday") == {"Globex"}
    assert where(src, "CreatedDate < TODAY") == {"Globex", "initech"}
    assert where(src, "CreatedDate > YESTERDAY") == {"Acme"}
    assert where(src, "CreatedDate <= YESTERDAY") == {"Globex", "initech"}
    assert where(src, "CreatedDate >= YESTERDAY") == {"Acme", "Globex"}
    assert where(src, "CreatedDate != TODAY") == {"Globex", "initech"}
    assert where(src, "CreatedDate = TOMORROW") == set()
    assert where(src, "CreatedDate = LAST_N_DAYS:1") == {"Acme", "Globex"}
    assert where(src, "CreatedDate = LAST_N_DAYS:35") == {"Acme", "Globex", "initech"}
    assert where(src, "CreatedDate = THIS_MONTH") == {"Acme", "Globex"}
    assert where(src, "CreatedDate = LAST_MONTH") == {"initech"}
    assert where(src, "CreatedDate = NEXT_N_DAYS:5") == set()


def test_relative_dates_on_date_fields(src: FakeSource) -> None:
    assert where(src, "Founded__c = THIS_MONTH") == {"Globex"}
    assert where(src, "Founded__c = LAST_MONTH") == {"initech"}
    assert where(src, "Founded__c < LAST_MONTH") == {"Acme"}
    assert where(src, "Founded__c = LAST_N_DAYS:14") == {"Globex"}
    assert where(src, "Founded__c = LAST_N_DAYS:15") == {"Globex", "initech"}
    starts = run(src, "SELECT StartDate FROM Contract WHERE StartDate = NEXT_N_DAYS:17").records
    assert [r["StartDate"] for r in starts] == ["2024-06-01"]
    assert run(src, "SELECT StartDate FROM Contract WHERE StartDate = NEXT_N_DAYS:16").records == []


@pytest.mark.parametrize(
    ("literal", "start", "end"),
    [
        ("TODAY", date(2024, 5, 15), date(2024, 5, 16)),
        ("YESTERDAY", date(2024, 5, 14), date(2024, 5, 15)),
        ("TOMORROW", date(2024, 5, 16), date(2024, 5, 17)),
        ("LAST_N_DAYS:7", date(2024, 5, 8), date(2024, 5, 16)),
        ("NEXT_N_DAYS:7", date(2024, 5, 16), date(2024, 5, 23)),
        ("N_DAYS_AGO:3", date(2024, 5, 12), date(2024, 5, 13)),
        ("THIS_WEEK", date(2024, 5, 12), date(2024, 5, 19)),
        ("LAST_WEEK", date(2024, 5, 5), date(2024, 5, 12)),
        ("NEXT_WEEK", date(2024, 5, 19), date(2024, 5, 26)),
        ("THIS_MONTH", date(2024, 5, 1), date(2024, 6, 1)),
        ("LAST_MONTH", date(2024, 4, 1), date(2024, 5, 1)),
        ("NEXT_MONTH", date(2024, 6, 1), date(2024, 7, 1)),
        ("LAST_N_MONTHS:5", date(2023, 12, 1), date(2024, 5, 1)),
        ("THIS_QUARTER", date(2024, 4, 1), date(2024, 7, 1)),
        ("LAST_QUARTER", date(2024, 1, 1), date(2024, 4, 1)),
        ("THIS_YEAR", date(2024, 1, 1), date(2025, 1, 1)),
        ("LAST_N_YEARS:2", date(2022, 1, 1), date(2024, 1, 1)),
        ("LAST_90_DAYS", date(2024, 2, 15), date(2024, 5, 16)),
    ],
)
def test_relative_ranges(literal: str, start: date, end: date) -> None:
    q = parse(f"SELECT Id FROM Account WHERE CreatedDate = {literal}")
    assert isinstance(q.where, Comparison)
    rel = q.where.value.value
    assert isinstance(rel, RelativeDate)
    assert relative_range(rel, NOW.date()) == (start, end)


# -- parents -----------------------------------------------------------------------------------


def test_parent_fields_are_nested_records(src: FakeSource) -> None:
    result = run(src, "SELECT Name, Contract__r.Status, Contract__r.Account.Name FROM Usage__c ORDER BY Name")
    by_name = {r["Name"]: r for r in result.records}
    u1 = by_name["U1"]
    contract = u1["Contract__r"]
    assert list(u1) == ["attributes", "Name", "Contract__r"]
    assert u1["attributes"]["type"] == "Usage__c"
    assert u1["attributes"]["url"].startswith("/services/data/v66.0/sobjects/Usage__c/a0A")
    assert contract["attributes"]["type"] == "Contract"
    assert contract["attributes"]["url"].startswith("/services/data/v66.0/sobjects/Contract/800")
    assert contract["Status"] == "Fulfilled"
    assert contract["Account"]["Name"] == "Acme"
    assert contract["Account"]["attributes"]["type"] == "Account"
    draft = by_name["U3"]["Contract__r"]
    assert list(draft) == ["attributes", "Status", "Account"]
    assert (draft["Status"], draft["Account"]) == ("Draft", None)
    assert by_name["U4"]["Contract__r"] is None


def test_filter_and_order_on_parent_fields(src: FakeSource) -> None:
    assert where(src, "Contract__r.Status = 'fulfilled'", "Usage__c") == {"U1"}
    assert where(src, "Contract__r.Account.Name = 'Globex'", "Usage__c") == {"U2"}
    assert where(src, "Contract__r.Account.Name = null", "Usage__c") == {"U3", "U4"}
    assert where(src, "Contract__r.Account.Owner.Name = 'Ada'", "Usage__c") == {"U1"}
    ordered = names(src, "SELECT Name FROM Usage__c ORDER BY Contract__r.Account.Name DESC, Name")
    assert ordered == ["U2", "U1", "U3", "U4"]


def test_object_name_may_qualify_its_own_fields(src: FakeSource) -> None:
    result = run(src, "SELECT Account.Name FROM Account WHERE Account.Name = 'Acme'")
    assert result.records[0]["Name"] == "Acme"


def test_five_relationship_levels_at_most(src: FakeSource) -> None:
    err = error(src, "SELECT Id FROM Usage__c WHERE A.B.C.D.E.F.Name = 'x'")
    assert err.error_code == "MALFORMED_QUERY"


def test_polymorphic_parents_get_their_type_from_the_record_id(src: FakeSource) -> None:
    contract = next(r["Id"] for r in src.rows("Contract", False) if r["Status"] == "Fulfilled")
    account = next(r["Id"] for r in src.rows("Account", False) if r["Name"] == "Acme")
    src.add("Usage__c", Name="P1", Related__c=contract)
    src.add("Usage__c", Name="P2", Related__c=account)
    text = "SELECT Name, Related__r.Id FROM Usage__c WHERE Related__c != null ORDER BY Name"
    p1, p2 = run(src, text).records
    assert (p1["Related__r"]["attributes"]["type"], p1["Related__r"]["Id"]) == ("Contract", contract)
    assert (p2["Related__r"]["attributes"]["type"], p2["Related__r"]["Id"]) == ("Account", account)
    assert isinstance(src, RecordTypeSource) and not isinstance(FakeSource(), RecordTypeSource)
    plain = FakeSource()
    plain.records = src.records
    assert run(plain, text).records[0]["Related__r"]["attributes"]["type"] == "Account"  # the declared one


# -- subqueries --------------------------------------------------------------------------------


def test_child_subqueries_nest_a_result_per_parent(src: FakeSource) -> None:
    text = (
        "SELECT Name, (SELECT Status, Account.Name FROM contracts ORDER BY Status) FROM Account ORDER BY Name"
    )
    result = run(src, text)
    acme, globex, initech = result.records
    assert list(acme) == ["attributes", "Name", "Contracts"]
    contracts = acme["Contracts"]
    assert (contracts["totalSize"], contracts["done"]) == (1, True)
    assert contracts["records"][0]["Status"] == "Fulfilled"
    assert contracts["records"][0]["Account"]["Name"] == "Acme"
    assert contracts["records"][0]["attributes"]["type"] == "Contract"
    assert globex["Contracts"]["records"][0]["Status"] == "Draft"
    assert initech["Contracts"] is None


def test_child_subqueries_filter_order_and_limit(src: FakeSource) -> None:
    contract = next(r["Id"] for r in src.rows("Contract", False) if r["Status"] == "Fulfilled")
    for n in range(4):
        src.add("Usage__c", Name=f"V{n}", Contract__c=contract, Quantity__c=float(n))
    text = (
        "SELECT Status, (SELECT Name FROM Usages__r WHERE Quantity__c != null "
        "ORDER BY Quantity__c DESC LIMIT 3) FROM Contract WHERE Status = 'Fulfilled'"
    )
    usages = run(src, text).records[0]["Usages__r"]
    assert [r["Name"] for r in usages["records"]] == ["U1", "V3", "V2"]
    assert usages["totalSize"] == 3


def test_child_subquery_errors(src: FakeSource) -> None:
    err = error(src, "SELECT Name, (SELECT Id FROM Nothings) FROM Account")
    assert err.error_code == "INVALID_TYPE"
    assert err.detail.startswith("Didn't understand relationship 'Nothings' in FROM part of query call.")
    assert error(src, "SELECT Name, (SELECT Nope FROM Contracts) FROM Account").error_code == "INVALID_FIELD"
    assert error(src, "SELECT Name, (SELECT Id FROM Contracts), (SELECT Id FROM Contracts) FROM Account")
    plain = FakeSource()
    assert not isinstance(plain, ChildRelationshipSource)
    assert error(plain, "SELECT Name, (SELECT Id FROM Contracts) FROM Account").error_code == "INVALID_TYPE"
    with pytest.raises(SoqlError):
        parse("SELECT Name, (SELECT Id, (SELECT Id FROM Usages__r) FROM Contracts) FROM Account")


def test_semi_and_anti_joins(src: FakeSource) -> None:
    assert where(src, "Id IN (SELECT AccountId FROM Contract WHERE Status = 'Draft')") == {"Globex"}
    assert where(src, "Id NOT IN (SELECT AccountId FROM Contract)") == {"initech"}
    assert where(src, "Contract__c IN (SELECT Id FROM Contract WHERE Account.Name = 'Acme')", "Usage__c") == {
        "U1"
    }
    err = error(src, "SELECT Id FROM Account WHERE Name IN (SELECT Status FROM Contract)")
    assert err.error_code == "INVALID_FIELD"
    assert (
        error(src, "SELECT Id FROM Account WHERE Id IN (SELECT Nope FROM Contract)").error_code
        == "INVALID_FIELD"
    )
    assert error(src, "SELECT Id FROM Account WHERE Id IN (SELECT Id FROM Nope)").error_code == "INVALID_TYPE"


# -- ordering, paging ----------------------------------------------------------------------------


def test_order_by_with_default_and_explicit_null_placement(src: FakeSource) -> None:
    assert names(src, "SELECT Name FROM Account ORDER BY AnnualRevenue") == ["initech", "Globex", "Acme"]
    assert names(src, "SELECT Name FROM Account ORDER BY AnnualRevenue ASC NULLS LAST") == [
        "Globex",
        "Acme",
        "initech",
    ]
    assert names(src, "SELECT Name FROM Account ORDER BY AnnualRevenue DESC") == ["Acme", "Globex", "initech"]
    assert names(src, "SELECT Name FROM Account ORDER BY AnnualRevenue DESC NULLS FIRST") == [
        "initech",
        "Acme",
        "Globex",
    ]


def test_order_by_text_is_case_insensitive_and_keys_combine(src: FakeSource) -> None:
    src.add("Account", Name="beta", Industry="Energy")
    assert names(src, "SELECT Name FROM Account ORDER BY Name") == ["Acme", "beta", "Globex", "initech"]
    assert names(src, "SELECT Name FROM Account ORDER BY Industry DESC, Name DESC") == [
        "Globex",
        "beta",
        "Acme",
        "initech",
    ]
    assert names(src, "SELECT Name FROM Account ORDER BY CreatedDate DESC, Name") == [
        "Acme",
        "Globex",
        "initech",
        "beta",
    ]


def test_the_polling_watermark_query(src: FakeSource) -> None:
    text = (
        "SELECT Id, Name, CreatedDate FROM Account WHERE CreatedDate > 2024-04-10T12:00:00.000+0000 "
        "ORDER BY CreatedDate, Id LIMIT 2000"
    )
    result = run(src, text, include_deleted=True)
    assert [r["Name"] for r in result.records] == ["Globex", "Acme"]
    assert result.records[0]["CreatedDate"] == "2024-05-14T23:59:59.000+0000"  # values as stored


def test_limit_and_offset(src: FakeSource) -> None:
    result = run(src, "SELECT Name FROM Account ORDER BY Name LIMIT 2")
    assert [r["Name"] for r in result.records] == ["Acme", "Globex"] and result.total_size == 2
    result = run(src, "SELECT Name FROM Account ORDER BY Name LIMIT 5 OFFSET 1")
    assert [r["Name"] for r in result.records] == ["Globex", "initech"] and result.total_size == 2
    assert run(src, "SELECT Name FROM Account OFFSET 10").total_size == 0
    assert run(src, "SELECT Name FROM Account LIMIT 0").records == []


# -- COUNT -------------------------------------------------------------------------------------


def test_count_returns_total_size_only(src: FakeSource) -> None:
    result = run(src, "SELECT COUNT() FROM Account WHERE Name != 'Acme'")
    assert result.records == [] and result.total_size == 2
    assert run(src, "SELECT count() FROM Usage__c").total_size == 4


def test_count_field_is_an_aggregate_result(src: FakeSource) -> None:
    result = run(src, "SELECT COUNT(Id) FROM Account")
    assert result.records == [{"attributes": {"type": "AggregateResult"}, "expr0": 3}]
    assert result.total_size == 1
    result = run(src, "SELECT COUNT(Industry) n, COUNT(Id) FROM Account")
    assert result.records[0] == {"attributes": {"type": "AggregateResult"}, "n": 2, "expr0": 3}


def test_count_cannot_mix_with_plain_fields(src: FakeSource) -> None:
    err = error(src, "SELECT COUNT(Id), Name FROM Account")
    assert (err.error_code, err.detail) == ("MALFORMED_QUERY", "Field must be grouped or aggregated: Name")
    assert error(src, "SELECT COUNT(), Name FROM Account").error_code == "MALFORMED_QUERY"


# -- names and errors ----------------------------------------------------------------------------


def test_names_in_any_case_come_back_in_describe_casing(src: FakeSource) -> None:
    result = run(src, "select ID, name, contract__R.account.NAME from usage__C where NAME = 'u1'")
    record = result.records[0]
    assert list(record) == ["attributes", "Id", "Name", "Contract__r"]
    assert record["attributes"]["type"] == "Usage__c"
    assert record["Contract__r"]["Account"]["Name"] == "Acme"


def test_casing_from_rows_when_the_source_has_no_describe_extras() -> None:
    plain = FakeSource()
    assert not isinstance(plain, DescribedQuerySource)
    assert isinstance(DescribedSource(), DescribedQuerySource)
    plain.add("Account", Name="Acme", CreatedDate="2024-05-15T08:00:00.000+0000")
    record = run(plain, "SELECT NAME, createddate FROM Account WHERE name = 'acme'").records[0]
    assert list(record) == ["attributes", "Name", "CreatedDate"]


def test_unknown_field_is_invalid_field_with_salesforce_message(src: FakeSource) -> None:
    text = "SELECT Id, Foo FROM Account"
    err = error(src, text)
    assert err.error_code == "INVALID_FIELD"
    assert err.message == (
        f"\n{text}\n           ^\nERROR at Row:1:Column:12\n"
        "No such column 'Foo' on entity 'Account'. If you are attempting to use a custom field, be sure "
        "to append the '__c' after the custom field name. Please reference your WSDL or the describe call "
        "for the appropriate names."
    )


@pytest.mark.parametrize(
    "text",
    [
        "SELECT Id FROM Account WHERE Foo__c = 1",
        "SELECT Id FROM Account ORDER BY Foo__c",
        "SELECT Id FROM Account WHERE Owner.Foo = 'x'",
        "SELECT COUNT(Foo) FROM Account",
    ],
)
def test_unknown_fields_anywhere_are_invalid_field(src: FakeSource, text: str) -> None:
    err = error(src, text)
    assert err.error_code == "INVALID_FIELD"
    assert err.detail.startswith("No such column 'Foo")


def test_unknown_field_on_a_parent_names_the_parent(src: FakeSource) -> None:
    err = error(src, "SELECT Contract__r.Account.Nope FROM Usage__c")
    assert "No such column 'Nope' on entity 'Account'" in err.detail


def test_unknown_relationship(src: FakeSource) -> None:
    err = error(src, "SELECT Contract__c.Name FROM Usage__c")
    assert err.error_code == "INVALID_FIELD"
    assert err.detail.startswith("Didn't understand relationship 'Contract__c' in field path.")


def test_unknown_object_is_invalid_type(src: FakeSource) -> None:
    text = "SELECT Id FROM Foo"
    err = error(src, text)
    assert err.error_code == "INVALID_TYPE"
    assert err.message == (
        f"\n{text}\n               ^\nERROR at Row:1:Column:16\n"
        "sObject type 'Foo' is not supported. If you are attempting to use a custom object, be sure to "
        "append the '__c' after the entity name. Please reference your WSDL or the describe call for the "
        "appropriate names."
    )


def test_duplicate_fields_are_refused(src: FakeSource) -> None:
    err = error(src, "SELECT Id, Name, name FROM Account")
    assert (err.error_code, err.detail) == ("MALFORMED_QUERY", "duplicate field selected: name")


def test_deleted_rows_only_with_include_deleted(src: FakeSource) -> None:
    assert "Deleted Co" not in names(src, "SELECT Name FROM Account")
    result = run(src, "SELECT Name FROM Account WHERE IsDeleted = true", include_deleted=True)
    assert [r["Name"] for r in result.records] == ["Deleted Co"]


def test_query_objects_are_values() -> None:
    q = parse("SELECT Id FROM Account")
    assert isinstance(q, Query)
    with pytest.raises(AttributeError):
        q.limit = 5  # type: ignore[misc]


# -- scale ---------------------------------------------------------------------------------------


def test_filters_over_100000_rows() -> None:
    """Correct at the size the emulator is meant to hold (its speed is measured by ``make bench``)."""
    big = FakeSource()
    rows = big.records["Account"]
    for i in range(100_000):
        record_id = f"001{i:015d}"
        rows[record_id] = dict.fromkeys(SCHEMA["Account"]) | {
            "Id": record_id,
            "IsDeleted": False,
            "Name": f"Account {i}",
            "NumberOfEmployees": i,
            "CreatedDate": f"2024-05-{1 + i % 28:02d}T10:00:00.000+0000",
        }
    result = run(
        big, "SELECT Id, Name FROM Account WHERE NumberOfEmployees >= 99000 AND Name LIKE 'account%'"
    )
    by_date = run(big, "SELECT COUNT() FROM Account WHERE CreatedDate > 2024-05-14T00:00:00Z")
    assert result.total_size == 1000
    assert by_date.total_size == sum(1 for i in range(100_000) if 1 + i % 28 >= 14)


# -- the escaping rules round-trip -------------------------------------------------------------


def escape(value: str) -> str:
    """Quote ``value`` for a SOQL string literal per the fact sheet's escapes."""
    replacements = {
        "\\": "\\\\",
        "'": "\\'",
        '"': '\\"',
        "\n": "\\n",
        "\r": "\\r",
        "\t": "\\t",
        "\b": "\\b",
        "\f": "\\f",
    }
    return "".join(replacements.get(ch, ch) for ch in value)


def _norm(value: str | None) -> str | None:
    return value.lower() if value else None  # text compares case-insensitively; '' is null


@settings(max_examples=150, deadline=None)
@given(value=st.text(max_size=30), others=st.lists(st.text(max_size=8), max_size=4))
def test_escaped_strings_match_exactly_the_equal_rows(value: str, others: list[str]) -> None:
    source = FakeSource()
    population = [value, value + "x", "x" + value, value.upper(), None, "plain", *others]
    ids = {source.add("Account", Name=name): name for name in population}
    expected = {rid for rid, name in ids.items() if _norm(name) == _norm(value)}

    equal = run(source, "SELECT Id FROM Account WHERE Name = '" + escape(value) + "'")
    assert {r["Id"] for r in equal.records} == expected

    like_escaped = escape(value).replace("%", "\\%").replace("_", "\\_")
    like = run(source, "SELECT Id FROM Account WHERE Name LIKE '" + like_escaped + "'")
    if value:
        assert {r["Id"] for r in like.records} == expected
