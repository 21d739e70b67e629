"""``TrelloConnector``: the engine's view of one Trello board (see :mod:`crmsync.connectors.base`).

Object names: ``Card``, ``List``, ``Label``, ``Comment``, ``CustomField`` (read and written) and
``Member`` (read). Card fields are described in :mod:`.cards`.

- **Writes** (:meth:`~TrelloConnector.write_batch`): one request per change (Trello has no bulk
  write), plus one ``PUT /cards/{id}/customFields`` per card for its custom fields. ``Card``
  creates are **exactly once**: each carries a marker in its description. A create that may have
  landed already (``Write.maybe_applied``: the engine retries it, or claimed it again after a
  worker stopped) is looked up first — one read of the board's cards for the batch (by board id,
  consistent, unlike search) finds the cards an earlier attempt made, which are updated instead;
  a first attempt is sent without a read. A create whose answer is lost is looked up the same way
  in its list before it is sent again. Upserts match a custom field's value
  (``external_id_field``) in a read of the board's cards with their custom fields.
- **Reads**: cards by id through ``/batch`` (10 a request); the board's lists, labels, members and
  custom fields by one board read with expansions.
- **Changes** (:meth:`~TrelloConnector.read_changes`): the board's actions after the watermark (an
  action id) name the cards to read again; deleted cards come back as ``deleted`` records.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

from crmsync.connectors.base import ApiUsage, ChangeBatch, Connector, Record, Write, WriteResult
from crmsync.connectors.capabilities import (
    Budgeted,
    Describes,
    NamedObjects,
    PolledSource,
    Readable,
    WebhookSource,
    Writable,
)
from crmsync.connectors.trello import cards as codec
from crmsync.connectors.trello.client import AnswerLost, TrelloClient
from crmsync.connectors.trello.errors import already_done, gone
from crmsync.connectors.trello.governor import StoreSlots
from crmsync.connectors.trello.history import TrelloHistory
from crmsync.connectors.trello.receiver import TrelloReceiver
from crmsync.connectors.trello.settings import TrelloConnection
from crmsync.connectors.trello.subscriptions import actions_since, newest_action
from crmsync.connectors.trello.webhooks import parse_action
from crmsync.errors import ConfigError, CrmsyncError, Fatal, FixTheData
from crmsync.store.db import Store

OBJECTS = ("Card", "List", "Label", "Comment", "CustomField", "Member")
#: sends of a create whose answer was lost (each after looking it up)
CREATE_ATTEMPTS = 3
_BOARD_EXPANSIONS = {
    "fields": "id,name,shortLink",
    "lists": "all",
    "labels": "all",
    "members": "all",
    "customFields": "true",
}


class TrelloConnector(
    TrelloReceiver,
    TrelloHistory,
    Connector,
    Writable,
    Readable,
    PolledSource,
    WebhookSource,
    Budgeted,
    NamedObjects,
    Describes,
):
    """One Trello board, for one configured connection (webhooks: :class:`.TrelloReceiver`)."""

    kind = "trello"

    def __init__(
        self,
        name: str,
        *,
        settings: TrelloConnection,
        client: TrelloClient | None = None,
        store: Store | None = None,
    ) -> None:
        super().__init__(name)
        self.settings = settings
        self.client = client if client is not None else TrelloClient(settings)
        self._board_id: str | None = None
        self._info: codec.BoardInfo | None = None
        if store is not None:
            self.attach_store(store)

    @classmethod
    def from_config(cls, name: str, settings: Any) -> TrelloConnector:
        """Build from a ``trello`` connection's settings model (or its mapping)."""
        if not isinstance(settings, TrelloConnection):
            settings = TrelloConnection.model_validate(settings)
        return cls(name, settings=settings)

    def attach_store(self, store: Store) -> None:
        """Share the request budgets through ``store`` with every other process using it."""
        self.client.governor.book = StoreSlots(store)

    def over_guard(self) -> bool:
        """Never: the budget is a 10-second window, paced, not a daily allowance to keep."""
        return False

    def max_batch_size(self, object_name: str) -> int:
        """Writes per call: one request each, so a batch only groups the board read before creates."""
        return 50

    def object_id(self, name: str) -> str:
        """The board's id: for the configured board (by id, shortLink or name) and for any object a
        flow names on this connection (``Card``, ...: they live on its board); else the board ``name``."""
        if name in OBJECTS or name in (self.settings.board, self.board_id()):
            return self.board_id()
        return str(self.client.board(name, fields="id")["id"])

    def _object(self, name: str) -> str:
        """An object name; the board's id (how the engine names what a flow reads here) means cards."""
        if name not in OBJECTS and name in (self.settings.board, self.board_id()):
            return "Card"
        return name

    def describe(self, object_name: str) -> dict[str, Any]:
        """A card's fields and their types (Trello's own, then the board's custom fields)."""
        if self._object(object_name) != "Card":
            return {"fields": [{"name": "name", "type": "string"}]}
        types = {
            "due": "datetime", "start": "datetime", "dateLastActivity": "datetime", "dueComplete": "boolean",
            "closed": "boolean", "pos": "double", "idMembers": "json", "idLabels": "json",
            codec.LABELS: "json", codec.MEMBERS: "json", "desc": "textarea",
        }  # fmt: skip
        fields = [{"name": n, "type": types.get(n, "string")} for n in (*codec.READ_FIELDS, codec.LIST)]
        fields += [{"name": n, "type": types[n]} for n in (codec.LABELS, codec.MEMBERS)]
        fields += [
            {"name": str(d.get("name")), "type": str(d.get("type"))}
            for d in self.info().custom_fields.values()
        ]
        return {"fields": fields}

    def __repr__(self) -> str:
        return f"TrelloConnector({self.name!r}, board={self.settings.board!r})"

    # -- health, budget, board ---------------------------------------------------------------------
    def check(self) -> None:
        """Read the board (key, token and access to it); Fatal when refused."""
        self.board_id()

    def api_usage(self) -> ApiUsage | None:
        return self.client.api_usage()

    @property
    def calls_made(self) -> int:
        return self.client.calls_made

    def board_id(self) -> str:
        """The configured board's id (the setting may be an id, a shortLink or a name)."""
        if self._board_id is None:
            wanted = self.settings.board
            if len(wanted) in (8, 24) and wanted.isalnum():
                try:
                    self._board_id = str(self.client.board(wanted, fields="id")["id"])
                except FixTheData:
                    self._board_id = None
            if self._board_id is None:
                boards = self.client.get("/members/me/boards", fields="id,name", filter="open")
                found = [str(b["id"]) for b in boards if b.get("name") == wanted]
                if len(found) != 1:
                    known = ", ".join(sorted(str(b.get("name")) for b in boards)) or "none"
                    raise ConfigError(
                        f"{len(found) or 'no'} Trello boards named {wanted!r} (boards: {known})"
                    )
                self._board_id = found[0]
        return self._board_id

    def info(self, *, refresh: bool = False) -> codec.BoardInfo:
        """The board's lists, labels, members and custom field definitions (cached)."""
        if self._info is None or refresh:
            self._info = codec.BoardInfo.from_board(self.client.board(self.board_id(), **_BOARD_EXPANSIONS))
        return self._info

    # -- writes ------------------------------------------------------------------------------------
    def write_batch(self, object_name: str, writes: Sequence[Write]) -> list[WriteResult]:
        """Apply ``writes``; one result per write, in order (see the module's docstring)."""
        object_name = self._object(object_name)
        if object_name not in OBJECTS or object_name == "Member":
            raise Fatal(
                f"a Trello connection cannot write {object_name!r}; it writes {', '.join(OBJECTS[:-1])}"
            )
        if object_name == "Card":
            return self._write_cards(writes)
        writer: Callable[[Write], WriteResult] = getattr(self, f"_write_{object_name.lower()}")
        results = [self._guarded(object_name, w, writer) for w in writes]
        self._info = None if object_name in ("List", "Label", "CustomField") else self._info
        return results

    def _guarded(self, object_name: str, w: Write, apply: Callable[[Write], WriteResult]) -> WriteResult:
        """Run one write; a refused record is a result, anything else raises."""
        try:
            return apply(w)
        except (ValueError, TypeError) as exc:
            return WriteResult(
                w.key, False, error=FixTheData(str(exc), object_name=object_name, record=w.key)
            )
        except FixTheData as exc:
            exc.object_name, exc.record = object_name, w.target_id or w.key
            return WriteResult(w.key, False, target_id=w.target_id, error=exc)

    def _write_cards(self, writes: Sequence[Write]) -> list[WriteResult]:
        info = self.info()
        upserts = any(w.operation == "upsert" for w in writes)
        retried = any(w.operation == "create" and w.maybe_applied for w in writes)
        by_marker: dict[str, str] = {}
        by_external: dict[tuple[str, str], str] = {}
        if upserts or retried:  # a first attempt at a create cannot have landed: it is not looked up
            extra = {"customFieldItems": "true"} if upserts else {}
            for card in self.client.get(f"/boards/{info.id}/cards/all", fields="id,desc", **extra):
                line = codec.marker_of(card.get("desc"))
                if line:
                    by_marker.setdefault(line, str(card["id"]))
                if not upserts:
                    continue
                for name, value in codec.card_record(card, info).fields.items():
                    if name not in codec.READ_FIELDS and value is not None:
                        by_external.setdefault((name, str(value)), str(card["id"]))
        results: list[WriteResult] = []
        for w in writes:
            target = w.target_id
            operation = w.operation
            line = codec.marker(self.name, w.key)
            if operation == "upsert":
                if not w.external_id_field or w.external_id in (None, ""):
                    results.append(
                        self._refused(w, "an upsert needs external_id_field (a custom field) and external_id")
                    )
                    continue
                target = by_external.get((w.external_id_field, str(w.external_id))) or by_marker.get(line)
                operation = "update" if target else "create"
                if w.external_id_field not in w.fields:  # the card carries the value it is matched by
                    w = replace(w, fields={**w.fields, w.external_id_field: w.external_id})
            elif operation == "create" and w.maybe_applied and line in by_marker:
                target, operation = by_marker[line], "update"  # made by an earlier attempt
            results.append(self._guarded("Card", w, _bind(self._card, operation, target, line)))
        return results

    def _refused(self, w: Write, problem: str) -> WriteResult:
        return WriteResult(w.key, False, error=FixTheData(problem, object_name="Card", record=w.key))

    def _card(self, w: Write, operation: str, target: str | None, line: str) -> WriteResult:
        info = self.info()
        if operation in ("update", "delete") and not target:
            raise ValueError(f"a card {operation} needs the card id (target_id)")
        if operation == "delete":
            try:
                self.client.delete(f"/cards/{target}")
            except FixTheData as exc:
                if not gone(exc):
                    raise
            return WriteResult(w.key, True, target_id=target, created=False)
        params, items = codec.split_fields(w.fields, info)
        created = w.operation in ("create", "upsert") and target is None
        if "desc" in params or created:
            params["desc"] = codec.with_marker(params.get("desc"), line)
        if created:
            params.setdefault(
                "idList", info.list_id(self.settings.default_list) if self.settings.default_list else None
            )
            if not params.get("idList"):
                raise ValueError(
                    "a new card needs a list: fields 'list' or 'idList', or the connection's default_list"
                )
            target = self._create_card(params, line)
        elif params:
            self.client.put(f"/cards/{target}", params)
        if items:
            self.client.put(f"/cards/{target}/customFields", {"customFieldItems": items})
        return WriteResult(w.key, True, target_id=target, created=created or w.operation == "create")

    def _create_card(self, params: dict[str, Any], line: str) -> str:
        """``POST /cards``; a lost answer is looked up (by the marker, in the list) before resending."""
        for attempt in range(1, CREATE_ATTEMPTS + 1):
            try:
                return str(self.client.post("/cards", params)["id"])
            except AnswerLost:
                cards = self.client.get(f"/lists/{params['idList']}/cards", fields="id,desc")
                found = [str(c["id"]) for c in cards if codec.marker_of(c.get("desc")) == line]
                if found:
                    return found[0]
                if attempt == CREATE_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    def _write_list(self, w: Write) -> WriteResult:
        fields = {k: v for k, v in w.fields.items() if k in ("name", "pos", "closed")}
        if w.operation in ("create", "upsert") and not w.target_id:
            made = self.client.post("/lists", {**fields, "idBoard": self.board_id()})
            return WriteResult(w.key, True, target_id=str(made["id"]), created=True)
        _need_target(w)
        body = {"closed": True} if w.operation == "delete" else fields
        self.client.put(f"/lists/{w.target_id}", body)
        return WriteResult(w.key, True, target_id=w.target_id, created=False)

    def _write_label(self, w: Write) -> WriteResult:
        fields = {k: v for k, v in w.fields.items() if k in ("name", "color")}
        if w.operation in ("create", "upsert") and not w.target_id:
            made = self.client.post("/labels", {**fields, "idBoard": self.board_id()})
            return WriteResult(w.key, True, target_id=str(made["id"]), created=True)
        _need_target(w)
        if w.operation == "delete":
            self._delete(f"/labels/{w.target_id}")
        else:
            self.client.put(f"/labels/{w.target_id}", fields)
        return WriteResult(w.key, True, target_id=w.target_id, created=False)

    def _write_comment(self, w: Write) -> WriteResult:
        card = w.fields.get("idCard")
        if not card:
            raise ValueError("a comment write needs fields['idCard']")
        if w.operation in ("create", "upsert") and not w.target_id:
            made = self.client.post(f"/cards/{card}/actions/comments", text=str(w.fields.get("text") or ""))
            return WriteResult(w.key, True, target_id=str(made["id"]), created=True)
        _need_target(w)
        if w.operation == "delete":
            self._delete(f"/cards/{card}/actions/{w.target_id}/comments")
        else:
            self.client.put(
                f"/cards/{card}/actions/{w.target_id}/comments", text=str(w.fields.get("text") or "")
            )
        return WriteResult(w.key, True, target_id=w.target_id, created=False)

    def _write_customfield(self, w: Write) -> WriteResult:
        """A definition: ``name``, ``type`` (create only), ``options`` (list texts, added when missing)."""
        options = [str(o) for o in w.fields.get("options") or []]
        if w.operation in ("create", "upsert") and not w.target_id:
            kind = str(w.fields.get("type") or "")
            if kind not in codec.CUSTOM_TYPES:
                raise ValueError(
                    f"a custom field's type is one of {', '.join(codec.CUSTOM_TYPES)}, not {kind!r}"
                )
            body: dict[str, Any] = {
                "idModel": self.board_id(),
                "modelType": "board",
                "name": str(w.fields.get("name") or ""),
                "type": kind,
                "pos": "bottom",
                "display_cardFront": bool(w.fields.get("display_cardFront", True)),
            }
            if kind == "list":
                body["options"] = [{"value": {"text": o}, "pos": i} for i, o in enumerate(options)]
            made = self.client.post("/customFields", body)
            return WriteResult(w.key, True, target_id=str(made["id"]), created=True)
        _need_target(w)
        if w.operation == "delete":
            self._delete(f"/customFields/{w.target_id}")
            return WriteResult(w.key, True, target_id=w.target_id, created=False)
        if "name" in w.fields:
            self.client.put(f"/customFields/{w.target_id}", {"name": str(w.fields["name"])})
        have = {
            str((o.get("value") or {}).get("text"))
            for o in self.client.get(f"/customFields/{w.target_id}/options")
        }
        for option in options:
            if option not in have:
                self.client.post(f"/customFields/{w.target_id}/options", {"value": {"text": option}})
        return WriteResult(w.key, True, target_id=w.target_id, created=False)

    def _delete(self, path: str) -> None:
        try:
            self.client.delete(path)
        except FixTheData as exc:
            if not gone(exc):
                raise

    def add_to_card(self, card_id: str, *, member: str | None = None, label: str | None = None) -> None:
        """Put one member (id or username) or label (id or name) on a card; already there is fine."""
        info = self.info()
        try:
            if member is not None:
                self.client.post(f"/cards/{card_id}/idMembers", value=info.member_ids([member])[0])
            if label is not None:
                self.client.post(f"/cards/{card_id}/idLabels", value=info.label_ids([label])[0])
        except FixTheData as exc:
            if not already_done(exc):
                raise

    # -- reads -------------------------------------------------------------------------------------
    def read_records(self, object_name: str, ids: Sequence[str]) -> Iterator[Record]:
        """The records with these ids; cards that no longer exist come back ``deleted``."""
        object_name = self._object(object_name)
        if object_name == "Card":
            yield from self._read_cards(ids)
            return
        if object_name not in OBJECTS:
            raise Fatal(f"a Trello connection reads {', '.join(OBJECTS)}, not {object_name!r}")
        wanted = set(ids)
        for record in self.records(object_name):
            if record.id in wanted:
                yield record

    def _read_cards(self, ids: Sequence[str]) -> Iterator[Record]:
        info = self.info()
        routes = [f"/cards/{i}?customFieldItems=true&fields={codec.CARD_QUERY}" for i in ids]
        for ident, answer in zip(ids, self.client.batch(routes), strict=True):
            if isinstance(answer, CrmsyncError):
                if isinstance(answer, FixTheData) and answer.status in (400, 404):
                    yield Record(object_name="Card", id=str(ident), fields={}, deleted=True)
                    continue
                raise answer
            if str(answer.get("idBoard")) == info.id:
                yield codec.card_record(answer, info)
            else:  # moved to another board: gone from this one
                yield Record(object_name="Card", id=str(ident), fields={}, deleted=True)

    def records(self, object_name: str) -> Iterator[Record]:
        """Every record of the board (cards: open and archived), from one read."""
        if object_name == "Card":
            board = self.client.board(
                self.board_id(),
                **_BOARD_EXPANSIONS,
                cards="all",
                card_customFieldItems="true",
                card_fields=codec.CARD_QUERY,
            )
            self._info = info = codec.BoardInfo.from_board(board)
            for card in board.get("cards") or []:
                yield codec.card_record(card, info)
            return
        board = self.client.board(self.board_id(), **_BOARD_EXPANSIONS)
        self._info = codec.BoardInfo.from_board(board)
        if object_name == "Comment":
            for action in actions_since(self.client, self.board_id(), None, types=("commentCard",)):
                data = action.get("data") or {}
                fields = {"text": data.get("text"), "idCard": (data.get("card") or {}).get("id")}
                yield Record("Comment", str(action["id"]), fields, modified=action.get("date"))
            return
        key = {"List": "lists", "Label": "labels", "Member": "members", "CustomField": "customFields"}[
            object_name
        ]
        for row in board.get(key) or []:
            yield Record(object_name, str(row["id"]), {k: v for k, v in row.items() if k != "id"})

    def scan(self, object_name: str, *, since: str | None = None) -> Iterator[Record]:
        """Every record of the object (cards ``since`` an action id: those changed after it)."""
        object_name = self._object(object_name)
        if since is None or object_name != "Card":
            yield from self.records(object_name)
        else:
            yield from self.read_changes(object_name, since).records

    def read_changes(
        self, object_name: str, watermark: str | None, fields: Sequence[str] | None = None
    ) -> ChangeBatch:
        """Cards changed after the watermark (the id of the last action read); all cards when None."""
        object_name = self._object(object_name)
        if object_name != "Card":
            raise Fatal(f"a Trello connection is polled for cards, not {object_name!r}")
        board = self.board_id()
        if watermark is None:
            newest = newest_action(self.client, board)
            return ChangeBatch(records=list(self.records("Card")), watermark=newest)
        touched: dict[str, bool] = {}  # card id -> still on the board
        newest = watermark
        for action in actions_since(self.client, board, watermark):
            change = parse_action(action)
            newest = str(action["id"])
            if change is None or change.card_id is None:
                continue
            touched.pop(change.card_id, None)
            touched[change.card_id] = change.kind != "delete"
        records = [Record("Card", i, {}, deleted=True) for i, alive in touched.items() if not alive]
        records.extend(self._read_cards([i for i, alive in touched.items() if alive]))
        return ChangeBatch(records=records, watermark=newest)

    def close(self) -> None:
        self.client.close()


def _bind(
    apply: Callable[[Write, str, str | None, str], WriteResult], *args: Any
) -> Callable[[Write], WriteResult]:
    return lambda w: apply(w, *args)


def _need_target(w: Write) -> None:
    if not w.target_id:
        raise ValueError(f"a {w.operation} needs the record's id (target_id)")
