"""``MondayConnector``: the engine's view of one monday.com account (see :mod:`crmsync.connectors.base`).

The object name is a board id (as text). Records are items: ``fields`` hold ``"name"`` (the item
name), one plain value per column id (:mod:`.columns`), and :data:`GROUP` (the item's group id).

- :meth:`~MondayConnector.write_batch` sends creates (``create_item``), updates
  (``change_multiple_column_values``, with the ``"name"`` pseudo-column for a rename;
  ``move_item_to_group`` when :data:`GROUP` is set; ``archive_item`` when :data:`ARCHIVE` is true)
  and deletes (``delete_item``) as aliased mutations, as many per request as the complexity
  budget allows (up to :data:`MAX_WRITES_PER_REQUEST`). Upserts look the external id up in the
  named column first (``items_page_by_column_values``).
- Creates go in requests of their own whose ``Idempotency-Key`` is derived from the writes they
  carry: a request retried after a crash, within monday's 30-minute replay window, is answered
  from monday's cache with the ids created the first time, and nothing is created twice. Other
  writes set values and are safe to run again; their key is fixed per call (reused only by the
  resends of that call), so that an identical later write is not answered by a stale replay.
- :meth:`~MondayConnector.read_changes` pages items whose ``__last_updated__`` is at or after the
  watermark, oldest first; :meth:`~MondayConnector.items` pages the whole board.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from crmsync.connectors.base import ApiUsage, ChangeBatch, Connector, Record, Write, WriteResult
from crmsync.connectors.capabilities import (
    Budgeted,
    Catalogued,
    ChoiceFields,
    Choices,
    NamedObjects,
    PacedBudget,
    PolledSource,
    Readable,
    WebhookSource,
    Writable,
)
from crmsync.connectors.monday import columns as codec
from crmsync.connectors.monday.budget import StoreBook
from crmsync.connectors.monday.catalog import MondayCatalog, board_choices
from crmsync.connectors.monday.client import (
    COMPLEXITY_FIELD,
    ITEM_READ_COST,
    MAX_QUERY_COST,
    MUTATION_COST,
    SMALL_QUERY_COST,
    MondayClient,
    Reply,
    idempotency_key,
    raise_first,
)
from crmsync.connectors.monday.errors import ITEM_GONE, VendorError, make_error
from crmsync.connectors.monday.fields import ARCHIVE, GROUP, NAME
from crmsync.connectors.monday.receiver import MondayReceiver
from crmsync.connectors.monday.settings import MondaySettings
from crmsync.connectors.stamps import parse_stamp
from crmsync.errors import ConfigError, CrmsyncError, FixTheData

if TYPE_CHECKING:
    from crmsync.store.db import Store

__all__ = ["ARCHIVE", "GROUP", "NAME", "MondayConnector"]

#: most writes in one request, whatever the budget
MAX_WRITES_PER_REQUEST = 100
#: items per page when reading
PAGE_SIZE = 100
#: ids per root ``items(ids:)`` query (monday's cap)
IDS_PER_QUERY = 100
#: values per ``items_page_by_column_values`` lookup
LOOKUP_VALUES = 100

#: complexity of looking boards up by name (500 boards, two fields)
BOARD_LOOKUP_COST = 1_500

ITEM_FIELDS = (
    "id name state updated_at group { id } board { id } "
    "column_values { id type text value "
    "... on BoardRelationValue { linked_item_ids } ... on DropdownValue { values { label } } }"
)


def _board_id(object_name: str) -> str:
    text = str(object_name).strip()
    if not text.isdigit():
        raise ConfigError(f"a monday board id is a number, not {object_name!r}")
    return text


@dataclass
class _Mutation:
    """One aliased root field of a request: ``alias: name(arg: $var, ...) { id }``."""

    alias: str
    kind: str
    text: str
    variables: dict[str, tuple[str, Any]]  # variable name -> (GraphQL type, value)


def _mutation(
    index: int, number: int, kind: str, name: str, args: Mapping[str, tuple[str, Any]]
) -> _Mutation:
    alias = f"w{index}_{number}"
    variables = {f"{arg}_{index}_{number}": spec for arg, spec in args.items()}
    bound = ", ".join(f"{arg}: ${arg}_{index}_{number}" for arg in args)
    return _Mutation(alias, kind, f"{alias}: {name}({bound}) {{ id }}", variables)


@dataclass
class _Plan:
    """The mutations of one write."""

    index: int
    mutations: list[_Mutation]
    create: bool


class MondayConnector(
    MondayReceiver,
    Connector,
    Writable,
    Readable,
    PolledSource,
    WebhookSource,
    Budgeted,
    PacedBudget,
    NamedObjects,
    Catalogued,
    ChoiceFields,
):
    """One monday.com account, for one configured connection (webhooks: :class:`.MondayReceiver`)."""

    kind = "monday"

    def __init__(
        self,
        name: str,
        *,
        settings: MondaySettings,
        client: MondayClient | None = None,
        store: Store | None = None,
    ) -> None:
        super().__init__(name)
        self.settings = settings
        self.client = client if client is not None else MondayClient(settings)
        self._columns: dict[str, dict[str, str]] = {}
        if store is not None:
            self.attach_store(store)

    @classmethod
    def from_config(cls, name: str, settings: Any) -> MondayConnector:
        """Build from a ``monday`` connection's settings model."""
        return cls(name, settings=MondaySettings.from_object(settings))

    def attach_store(self, store: Store) -> None:
        """Keep the complexity budget in ``store``, shared with every other process using it."""
        pacer = self.client.pacer
        pacer.book = StoreBook(store, self.name, pacer.per_minute)

    def over_guard(self) -> bool:
        """Never: the complexity budget is per minute and paced, not a daily allowance to keep."""
        return False

    def __repr__(self) -> str:
        return f"MondayConnector({self.name!r}, api_url={self.settings.api_url!r})"

    # -- health and budget -------------------------------------------------------------------------
    def check(self) -> None:
        """One cheap call (``me { id }``); Fatal when the token is refused."""
        self.client.me()

    def api_usage(self) -> ApiUsage | None:
        return self.client.api_usage()

    @property
    def calls_made(self) -> int:
        return self.client.calls_made

    def budget_name(self) -> str:
        return "monday's complexity budget"

    def on_wait(self, report: Callable[[float | None], None] | None) -> None:
        """Tell ``report`` the seconds left while the pacer waits for the complexity budget."""
        self.client.pacer.report = report

    def max_batch_size(self, object_name: str) -> int:
        """As many writes as one request may carry within the per-minute budget."""
        return self.writes_per_request()

    def writes_per_request(self) -> int:
        """How many mutations one request may carry within the per-minute budget."""
        by_budget = self.client.pacer.per_minute // MUTATION_COST
        return max(1, min(MAX_WRITES_PER_REQUEST, by_budget, MAX_QUERY_COST // MUTATION_COST))

    # -- board metadata ----------------------------------------------------------------------------
    def columns(self, board_id: str, *, refresh: bool = False) -> dict[str, str]:
        """Column id → type of the board (cached)."""
        board = _board_id(board_id)
        if refresh or board not in self._columns:
            reply = self.client.query(
                f"query ($b: [ID!]) {{ boards(ids: $b) {{ id columns {{ id type }} }} {COMPLEXITY_FIELD} }}",
                {"b": [board]},
                cost=SMALL_QUERY_COST,
            )
            raise_first(reply)
            boards = reply.data.get("boards") or []
            if not boards:
                raise ConfigError(f"no monday board {board} for this token", object_name=board)
            self._columns[board] = {str(c["id"]): str(c["type"]) for c in boards[0].get("columns") or []}
        return self._columns[board]

    # -- writes ------------------------------------------------------------------------------------
    def write_batch(self, object_name: str, writes: Sequence[Write]) -> list[WriteResult]:
        """Apply ``writes`` as aliased mutations; one result per write, in order.

        A write monday refuses is a result with its error. When a whole request fails before any
        request of the batch succeeded, the error is raised; after one succeeded, the writes not
        yet sent get the error instead (nothing written is written twice on retry).
        """
        board = _board_id(object_name)
        results: list[WriteResult | None] = [None] * len(writes)
        for index, w in enumerate(writes):
            problem = _invalid(w)
            if problem:
                results[index] = WriteResult(
                    w.key, False, error=FixTheData(problem, object_name=board, record=w.key)
                )
        pending = [i for i, r in enumerate(results) if r is None]
        if not pending:
            return [r for r in results if r is not None]
        types = self.columns(board)
        found = self._lookup_upserts(board, [writes[i] for i in pending if writes[i].operation == "upsert"])

        plans: list[_Plan] = []
        for index in pending:
            w = writes[index]
            target = w.target_id
            operation = w.operation
            if operation == "upsert":
                target = found.get(str(w.external_id))
                operation = "update" if target else "create"
                if not target:  # the new item holds its external id: the same upsert again finds it
                    w = replace(w, fields={**w.fields, str(w.external_id_field): w.external_id})
            try:
                plans.append(self._plan(index, w, operation, target, board, types))
            except (TypeError, ValueError) as exc:
                results[index] = WriteResult(
                    w.key,
                    False,
                    error=FixTheData(f"cannot encode a value: {exc}", object_name=board, record=w.key),
                )

        creates = [p for p in plans if p.create]
        others = [p for p in plans if not p.create]
        nonce = uuid.uuid4().hex
        sent_any = False
        for group, is_create in ((creates, True), (others, False)):
            for chunk in self._chunks(group):
                key = (
                    idempotency_key(
                        "monday", self.name, board, [self._fingerprint(writes[p.index]) for p in chunk]
                    )
                    if is_create
                    else idempotency_key("monday", self.name, board, nonce, [p.index for p in chunk])
                )
                try:
                    reply = self._send(chunk, key)
                except CrmsyncError as exc:
                    if not sent_any:
                        raise
                    for i in range(len(writes)):
                        if results[i] is None:
                            results[i] = WriteResult(writes[i].key, False, error=exc)
                    return [r for r in results if r is not None]
                sent_any = True
                for plan in chunk:
                    results[plan.index] = self._result(board, writes[plan.index], plan, reply)
        return [
            r if r is not None else WriteResult(w.key, False) for r, w in zip(results, writes, strict=True)
        ]

    def _fingerprint(self, w: Write) -> list[Any]:
        return [
            w.key,
            w.operation,
            w.target_id,
            w.external_id,
            json.dumps(dict(w.fields), sort_keys=True, default=str),
        ]

    def _chunks(self, plans: list[_Plan]) -> Iterator[list[_Plan]]:
        limit = self.writes_per_request()
        chunk: list[_Plan] = []
        size = 0
        for plan in plans:
            count = len(plan.mutations)
            if chunk and size + count > limit:
                yield chunk
                chunk, size = [], 0
            chunk.append(plan)
            size += count
        if chunk:
            yield chunk

    def _plan(
        self, index: int, w: Write, operation: str, target: str | None, board: str, types: Mapping[str, str]
    ) -> _Plan:
        values: dict[str, Any] = {}
        for column, value in w.fields.items():
            if column in (GROUP, ARCHIVE):
                continue
            if column == NAME:
                values[NAME] = None if value is None else str(value)
                continue
            values[column] = codec.encode(types.get(column), value)
        group = w.fields.get(GROUP)
        no_labels = ("Boolean", False)
        if operation == "create":
            name = values.pop(NAME, None)
            if name is None or not name.strip():
                raise ValueError("a new item needs a name (fields['name'])")
            args: dict[str, tuple[str, Any]] = {
                "board_id": ("ID!", board),
                "item_name": ("String!", name),
                "column_values": ("JSON", json.dumps(values, default=str)),
                "create_labels_if_missing": no_labels,
            }
            if group:
                args["group_id"] = ("String", str(group))
            return _Plan(index, [_mutation(index, 0, "create", "create_item", args)], True)
        item = ("ID", str(target))
        if operation == "delete":
            return _Plan(index, [_mutation(index, 0, "delete", "delete_item", {"item_id": item})], False)
        mutations: list[_Mutation] = []
        if values or not (group or w.fields.get(ARCHIVE)):
            # (with nothing to change, an empty change still confirms that the item exists)
            update = {
                "board_id": ("ID!", board),
                "item_id": item,
                "column_values": ("JSON!", json.dumps(values, default=str)),
                "create_labels_if_missing": no_labels,
            }
            mutations.append(
                _mutation(index, len(mutations), "update", "change_multiple_column_values", update)
            )
        if group:
            move = {"item_id": item, "group_id": ("String!", str(group))}
            mutations.append(_mutation(index, len(mutations), "move", "move_item_to_group", move))
        if w.fields.get(ARCHIVE):
            mutations.append(_mutation(index, len(mutations), "archive", "archive_item", {"item_id": item}))
        return _Plan(index, mutations, False)

    def _send(self, chunk: list[_Plan], key: str) -> Reply:
        definitions: list[str] = []
        fields: list[str] = []
        variables: dict[str, Any] = {}
        for plan in chunk:
            for mutation in plan.mutations:
                for name, (gql_type, value) in mutation.variables.items():
                    definitions.append(f"${name}: {gql_type}")
                    variables[name] = value
                fields.append(mutation.text)
        text = f"mutation ({', '.join(definitions)}) {{ {' '.join(fields)} }}"
        return self.client.mutate(text, variables, cost=MUTATION_COST * len(fields), key=key)

    def _result(self, board: str, w: Write, plan: _Plan, reply: Reply) -> WriteResult:
        target: str | None = w.target_id
        for mutation in plan.mutations:
            errors = reply.errors_for(mutation.alias)
            answer = reply.data.get(mutation.alias)
            if errors and not (mutation.kind in ("delete", "archive") and _gone(errors)):
                record = target or w.key
                return WriteResult(
                    w.key,
                    False,
                    target_id=target,
                    error=make_error(None, errors[0], url=reply.url, object_name=board, record=record),
                )
            if isinstance(answer, Mapping) and answer.get("id") is not None:
                target = str(answer["id"])
        return WriteResult(w.key, True, target_id=target, created=plan.create)

    def _lookup_upserts(self, board: str, writes: list[Write]) -> dict[str, str]:
        """External id → item id, for upserts, by the text of their external-id column."""
        by_column: dict[str, set[str]] = {}
        for w in writes:
            by_column.setdefault(str(w.external_id_field), set()).add(str(w.external_id))
        found: dict[str, str] = {}
        selection = (
            f"{{ cursor items {{ id column_values(ids: $ids) {{ id text }} }} }} {COMPLEXITY_FIELD} }}"
        )
        first_page = (
            "query ($b: ID!, $c: [ItemsPageByColumnValuesQuery!], $ids: [String!]) { "
            f"items_page_by_column_values(board_id: $b, columns: $c, limit: {PAGE_SIZE}) " + selection
        )
        next_page = (
            "query ($b: ID!, $cur: String, $ids: [String!]) { "
            f"items_page_by_column_values(board_id: $b, cursor: $cur, limit: {PAGE_SIZE}) " + selection
        )
        for column, values in by_column.items():
            ordered = sorted(values)
            for start in range(0, len(ordered), LOOKUP_VALUES):
                part = ordered[start : start + LOOKUP_VALUES]
                text = first_page
                variables: dict[str, Any] = {
                    "b": board,
                    "c": [{"column_id": column, "column_values": part}],
                    "ids": [column],
                }
                while True:
                    reply = self.client.query(text, variables, cost=ITEM_READ_COST * PAGE_SIZE)
                    raise_first(reply)
                    page = reply.data.get("items_page_by_column_values") or {}
                    for item in page.get("items") or []:
                        for value in item.get("column_values") or []:
                            shown = str(value.get("text") or "")
                            if shown in values:
                                found.setdefault(shown, str(item["id"]))
                    cursor = page.get("cursor")
                    if not cursor:
                        break
                    text, variables = next_page, {"b": board, "cur": cursor, "ids": [column]}
        return found

    # -- reads -------------------------------------------------------------------------------------
    def read_records(self, object_name: str, ids: Sequence[str]) -> Iterator[Record]:
        """The board's items with these ids (unknown ids are skipped; deleted ones are ``deleted``)."""
        board = _board_id(object_name)
        wanted = [str(i) for i in ids]
        for start in range(0, len(wanted), IDS_PER_QUERY):
            part = wanted[start : start + IDS_PER_QUERY]
            reply = self.client.query(
                f"query ($ids: [ID!]) {{ items(ids: $ids) {{ {ITEM_FIELDS} }} {COMPLEXITY_FIELD} }}",
                {"ids": part},
                cost=ITEM_READ_COST * len(part),
            )
            raise_first(reply)
            for item in reply.data.get("items") or []:
                if str((item.get("board") or {}).get("id")) == board:
                    yield self._record(board, item)

    def items(self, object_name: str, *, query_params: Mapping[str, Any] | None = None) -> Iterator[Record]:
        """Every active item of the board (or those ``query_params`` select), page by page."""
        board = _board_id(object_name)
        cursor: str | None = None
        text = (
            "query ($b: [ID!], $q: ItemsQuery) { boards(ids: $b) { "
            f"items_page(limit: {PAGE_SIZE}, query_params: $q) {{ cursor items {{ {ITEM_FIELDS} }} }} }} "
            f"{COMPLEXITY_FIELD} }}"
        )
        reply = self.client.query(
            text,
            {"b": [board], "q": dict(query_params) if query_params else None},
            cost=ITEM_READ_COST * PAGE_SIZE,
        )
        raise_first(reply)
        boards = reply.data.get("boards") or []
        if not boards:
            raise ConfigError(f"no monday board {board} for this token", object_name=board)
        page = boards[0].get("items_page") or {}
        while True:
            for item in page.get("items") or []:
                yield self._record(board, item)
            cursor = page.get("cursor")
            if not cursor:
                return
            reply = self.client.query(
                f"query ($c: String!) {{ next_items_page(cursor: $c, limit: {PAGE_SIZE}) "
                f"{{ cursor items {{ {ITEM_FIELDS} }} }} {COMPLEXITY_FIELD} }}",
                {"c": cursor},
                cost=ITEM_READ_COST * PAGE_SIZE,
            )
            raise_first(reply)
            page = reply.data.get("next_items_page") or {}

    def scan(self, object_name: str, *, since: str | None = None) -> Iterator[Record]:
        """Every active item of the board (``since``: updated at or after it, oldest first)."""
        if since is None:
            yield from self.items(object_name)
        else:
            yield from self.read_changes(object_name, since).records

    def read_changes(
        self, object_name: str, watermark: str | None, fields: Sequence[str] | None = None
    ) -> ChangeBatch:
        """Items updated at or after ``watermark`` (all items when it is None), oldest first.

        Items at exactly the watermark are read again (monday's stamps have whole seconds, so a
        later change in the same second must not be missed); each item appears once. The new
        watermark is the newest ``updated_at`` seen. An expired cursor restarts from there.
        Deleted items are not listed by monday's pages: deletions arrive by webhook. Items are read
        whole (``fields`` is not needed: a page's cost does not depend on it).
        """
        by_id: dict[str, Record] = {}
        since = watermark
        newest = watermark
        for _ in range(10):  # restarts after an expired cursor
            params: dict[str, Any] = {"order_by": [{"column_id": "__last_updated__", "direction": "asc"}]}
            if since:
                params["rules"] = [
                    {
                        "column_id": "__last_updated__",
                        "compare_value": ["EXACT", since],
                        "operator": "greater_than_or_equals",
                        "compare_attribute": "UPDATED_AT",
                    }
                ]
            try:
                for record in self.items(object_name, query_params=params):
                    by_id.pop(record.id, None)
                    by_id[record.id] = record
                    if record.modified and (
                        newest is None or parse_stamp(record.modified) > parse_stamp(newest)
                    ):
                        newest = record.modified
                break
            except CrmsyncError as exc:
                if exc.vendor_code != "CursorExpiredError":
                    raise
                since = newest
        return ChangeBatch(records=list(by_id.values()), watermark=newest)

    def _record(self, board: str, item: Mapping[str, Any]) -> Record:
        fields: dict[str, Any] = {NAME: item.get("name")}
        for column in item.get("column_values") or []:
            fields[str(column.get("id"))] = codec.decode_column_value(column)
        group = item.get("group")
        if isinstance(group, Mapping) and group.get("id") is not None:
            fields[GROUP] = str(group["id"])
        return Record(
            object_name=board,
            id=str(item.get("id")),
            fields=fields,
            modified=str(item["updated_at"]) if item.get("updated_at") else None,
            deleted=item.get("state") not in (None, "active"),
        )

    def choice_fields(self, object_name: str) -> dict[str, Choices]:
        """The board's status and dropdown columns and their labels (one small query, not cached)."""
        return board_choices(self.client, _board_id(object_name))

    def object_id(self, name: str) -> str:
        return self.board_id(name)

    def catalog(self) -> MondayCatalog:
        """The account's boards and their columns (``crmsync check --connect``)."""
        return MondayCatalog(self)

    def board_id(self, name: str) -> str:
        """The id of the board called ``name`` (a configuration may name boards instead of numbering them)."""
        if name.strip().isdigit():
            return name.strip()
        reply = self.client.query("query { boards(limit: 500) { id name } }", cost=BOARD_LOOKUP_COST)
        raise_first(reply)
        found = [str(b["id"]) for b in reply.data.get("boards") or [] if b.get("name") == name]
        if len(found) != 1:
            known = sorted(str(b.get("name")) for b in reply.data.get("boards") or [])
            problem = "no board" if not found else f"{len(found)} boards"
            raise ConfigError(
                f"{problem} named {name!r} on connection {self.name!r}; boards: {', '.join(known)}"
            )
        return found[0]

    def close(self) -> None:
        self.close_receiver()
        self.client.close()


def _gone(errors: list[VendorError]) -> bool:
    return all(e.code in ITEM_GONE for e in errors)


def _invalid(w: Write) -> str | None:
    if w.operation not in ("create", "update", "upsert", "delete"):
        return f"unknown operation {w.operation!r}"
    if w.operation in ("update", "delete") and not w.target_id:
        return f"a {w.operation} needs the item id (target_id)"
    if w.operation == "upsert" and (not w.external_id_field or w.external_id in (None, "")):
        return "an upsert needs external_id_field (a column id) and external_id"
    if w.operation in ("create", "upsert"):
        name = w.fields.get(NAME)
        if w.operation == "create" and (name is None or not str(name).strip()):
            return "a new item needs a name (fields['name'])"
        if name is not None and len(str(name)) > 255:
            return "an item name has at most 255 characters"
    return None
