"""Two-way flows: changes from either side, echo suppression, conflicts, related objects.

A change is *forward* when it comes from the flow's source (a Monday.com webhook) and *reverse*
when it comes from its target (the Salesforce poller). For each record the engine keeps, per
side, the value and time of every field as last synced (the shadow):

- a field whose incoming value equals its shadow value is no news: our own write coming back
  (echo) or an unchanged field — it is dropped, so two-way sync cannot ping-pong;
- a field whose shadow is newer than the incoming change is stale — dropped, logged;
- a field also changed by a change of the other side still waiting in the queue is a
  **conflict**, settled by the flow's policy (``owner_wins``, ``newest_wins``, ``source_wins``,
  ``target_wins``) and logged; the loser's value is overwritten on its own side in due course.

The first forward change of a record that matches the flow's ``when`` creates the target record
— with its related objects, all or none, in one call — and writes the new ids back to the source.

A change carrying its source's event (``meta``: when, who, action, delivery id) hands it to the
target's write, with what the event says it set and replaced mapped like its fields
(``Write.changed`` / ``Write.previous``); a target that keeps a history
(:class:`~crmsync.connectors.capabilities.KeepsHistory`) is also written an event that changes none
of its fields (a comment), so it can record it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa

from crmsync.connectors.base import Connector, Write
from crmsync.connectors.capabilities import KeepsHistory, Readable, RelatedCreator, Writable, require
from crmsync.engine.decide import (
    STAMPS,
    Creation,
    Side,
    change_time,
    decide,
    field_time,
    needs_full_read,
    news,
    settle,
)
from crmsync.engine.flows import FlowRuntime
from crmsync.engine.queue import ClaimedChange
from crmsync.errors import CrmsyncError, FixTheData
from crmsync.store import links, shadow
from crmsync.store import schema as t
from crmsync.store.synclog import LogEntry, record_many

if TYPE_CHECKING:
    from crmsync.engine.runtime import Runtime

log = logging.getLogger(__name__)

#: earlier values kept per field, to recognise a late read of a superseded version
RECENT = 4


@dataclass(frozen=True)
class Applied:
    """What applying one change did: typed, with the sync log's line."""

    action: Literal["created", "matched", "updated", "deleted", "skipped"]
    message: str

    @property
    def skipped(self) -> bool:
        return self.action == "skipped"

    @property
    def operation(self) -> Literal["create", "update", "delete"] | None:
        """What it did to the record written (an adopted counterpart is updated); None: skipped."""
        if self.action == "skipped":
            return None
        return "create" if self.action == "created" else "delete" if self.action == "deleted" else "update"

    @classmethod
    def skip(cls, reason: str) -> Applied:
        return cls("skipped", f"skipped: {reason}")


@dataclass(frozen=True)
class Step:
    """One write a change makes: ``write`` to ``object_name`` of the connection ``connection``."""

    connection: str
    object_name: str
    write: Write


@dataclass(frozen=True)
class Plan:
    """What applying one change takes: its ``writes``, in order, then ``finish`` once every one of
    them landed (the shadows remembered, a deleted record's links forgotten), which says what was
    done. A change whose work is done while planning (a creation with its related records and
    write-backs, a skip) has no writes left."""

    writes: tuple[Step, ...]
    finish: Callable[[], Applied]

    @classmethod
    def done(cls, applied: Applied) -> Plan:
        return cls((), lambda: applied)


class TwoWay:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    # -- entry ---------------------------------------------------------------------------------------
    def apply(self, flow: FlowRuntime, change: ClaimedChange) -> Applied:
        """Apply one record's net change, one write per call; returns what happened (for the sync
        log). Raises on failure. The worker plans and writes many changes together instead
        (:mod:`.twoway_batch`)."""
        plan = self.plan(flow, change)
        for step in plan.writes:
            self._write(self.rt.connector(step.connection), step.object_name, step.write)
        return plan.finish()

    def plan(self, flow: FlowRuntime, change: ClaimedChange) -> Plan:
        """What one record's net change takes: news, conflicts and the decision are settled now;
        the writes are left to the caller, who calls ``finish`` once they all landed. A creation
        (with its related records, a match, the ids written back) is done here. Raises on failure."""
        side: Side = "source" if change.source == flow.source else "target"
        at = change_time(flow, side, change.fields, change.created_at, change.parts)
        fields = {k: v for k, v in change.fields.items() if k not in STAMPS}
        if side == "source":
            return self._forward(flow, change, fields, at)
        return self._reverse(flow, change, fields, at)

    # -- source → target -------------------------------------------------------------------------------
    def _forward(
        self, flow: FlowRuntime, change: ClaimedChange, fields: dict[str, Any], at: datetime
    ) -> Plan:
        key = change.record_key
        link = links.get_link(self.rt.store, flow.name, flow.source, key)
        target = self.rt.connector(flow.target)
        if change.operation == "delete":
            if link is None or flow.on_delete == "ignore":
                return Plan.done(
                    Applied.skip("nothing linked to delete" if link is None else "on_delete is ignore")
                )
            gone = link.target_id

            def forget() -> Applied:
                self._forget(flow, key, gone)
                return Applied("deleted", f"deleted {flow.object_name} {gone}")

            delete = Write(key=key, operation="delete", target_id=gone, meta=change.meta)
            delete = flow.with_event_values(delete, owned=False)
            return Plan((Step(flow.target, flow.object_name, delete),), forget)
        known = self._shadow(flow, "source", key)
        edits = self._news(flow, "source", key, known, fields, at)
        if link is None:
            record = {k: v[0] for k, v in known.items()} | fields
            if needs_full_read(flow, record):  # e.g. a create webhook carries only the filled columns
                record = self._read_source(flow, key) | fields
            self.remember(flow, "source", key, record, at)
            decision = decide(flow, key, record, linked=False)
            if decision.creation is None:
                return Plan.done(Applied.skip(decision.reason))
            return Plan.done(self._create(flow, key, record, decision.creation, at, change))
        target_id = link.target_id
        edits = self._settle(flow, "source", key, target_id, edits, at)
        decision = decide(flow, key, fields, linked=True, news=edits)
        if decision.action == "skip":
            if change.meta is not None and isinstance(target, KeepsHistory) and target.keeps_history():
                event = Write(key=key, operation="update", target_id=target_id, meta=change.meta)
                event = flow.with_event_values(event, owned=False)
                what = f"recorded {change.meta.action or 'the event'} (no field changed)"
                return Plan((Step(flow.target, flow.object_name, event),), lambda: Applied("updated", what))
            return Plan.done(Applied.skip(decision.reason))
        mapped = decision.fields
        record = {k: v[0] for k, v in known.items()} | fields
        steps: list[Step] = []
        main = {f: v for f, v in mapped.items() if f in self._target_fields(flow)}
        if main:
            update = Write(key=key, operation="update", fields=main, target_id=target_id, meta=change.meta)
            update = flow.with_event_values(update, owned=False)
            steps.append(Step(flow.target, flow.object_name, update))
        for rel in flow.related:
            rel_link = links.get_link(self.rt.store, f"{flow.name}:{rel.object_name}", flow.source, key)
            rel_fields = flow.to_target(
                key, {k: record[k] for k in edits if k in record}, rel.rules, owned=False
            )
            rel_fields = {
                f: v for f, v in rel_fields.items() if f in {r.target for r in rel.rules if r.source in edits}
            }
            if rel_link is not None and rel_fields:
                rel_update = Write(
                    key=key, operation="update", fields=rel_fields, target_id=rel_link.target_id
                )
                steps.append(Step(flow.target, rel.object_name, rel_update))
        wrote = [s.object_name for s in steps]

        def remember() -> Applied:
            self.remember(flow, "source", key, edits, at)
            self.remember(flow, "target", target_id, main, at, written_at=datetime.now(UTC))
            return (
                Applied("updated", f"updated {', '.join(wrote)}")
                if wrote
                else Applied.skip("nothing to write")
            )

        self.intend(flow, "target", target_id, main)
        return Plan(tuple(steps), remember)

    def _create(
        self,
        flow: FlowRuntime,
        key: str,
        record: Mapping[str, Any],
        plan: Creation,
        at: datetime,
        change: ClaimedChange | None = None,
    ) -> Applied:
        target = self.rt.connector(flow.target)
        main = plan.fields  # the values `crmsync preview` shows
        related = [(r.object_name, r.fields, r.refs) for r in plan.related]
        existing = self._find_match(flow, record)
        if existing is not None:  # the counterpart exists already (e.g. the same e-mail): adopt it
            update = Write(key=key, operation="update", fields=main, target_id=existing)
            self._write(target, flow.object_name, update)
            ids = {flow.object_name: existing}
            if related:  # its related records are still made, together: the last one refers to the others
                *first, (last_obj, last_fields, last_refs) = related
                creator = require(target, RelatedCreator, f"flow {flow.name!r} (related)")
                ids |= creator.create_related(last_obj, last_fields, first, refs=last_refs)
        elif related:
            creator = require(target, RelatedCreator, f"flow {flow.name!r} (related)")
            ids = creator.create_related(flow.object_name, main, related)
        else:
            meta = change.meta if change is not None else None
            again = change is not None and change.maybe_applied  # an earlier attempt may have made it
            create = Write(key=key, operation="create", fields=main, meta=meta, maybe_applied=again)
            create = flow.with_event_values(create, owned=False)
            writer = require(target, Writable, f"flow {flow.name!r}")
            [result] = writer.write_batch(flow.object_name, [create])
            if not result.ok:
                raise result.error or FixTheData("create refused")
            ids = {flow.object_name: str(result.target_id)}
        links.put_link(self.rt.store, flow.name, flow.source, key, flow.target, ids[flow.object_name])
        for rel in flow.related:
            links.put_link(
                self.rt.store,
                f"{flow.name}:{rel.object_name}",
                flow.source,
                key,
                flow.target,
                ids[rel.object_name],
            )
        self.remember(flow, "target", ids[flow.object_name], main, at)
        back = {flow.write_back: ids[flow.object_name]} if flow.write_back else {}
        back |= {rel.write_back: ids[rel.object_name] for rel in flow.related if rel.write_back}
        if back:
            self._write_back(flow, key, back)
        made = ", ".join(f"{obj} {rid}" for obj, rid in ids.items() if rid != existing)
        if existing is not None:
            return Applied(
                "matched",
                f"matched {flow.object_name} {existing} by {flow.match_field}"
                + (f"; created {made}" if made else ""),
            )
        return Applied("created", f"created {made}")

    def _write_back(self, flow: FlowRuntime, key: str, back: Mapping[str, Any]) -> None:
        source = self.rt.connector(flow.source)
        board = self.rt.board_of(flow, flow.source)
        self._write(source, board or "", Write(key=key, operation="update", fields=back, target_id=key))
        self.remember(flow, "source", key, back, datetime.now(UTC))  # its own webhook is then an echo

    def _find_match(self, flow: FlowRuntime, record: Mapping[str, Any]) -> str | None:
        """The target record whose match field holds the record's match value, if the flow has one."""
        match = flow.flow.match
        if match is None or match.source is None or record.get(match.source) in (None, ""):
            return None
        target = self.rt.queryable(flow.target, f"flow {flow.name!r} (match)")
        value = str(record[match.source])
        rows = target.find_by_field(flow.object_name, match.field, [value]).get(value, [])
        if len(rows) > 1:
            raise FixTheData(
                f"several {flow.object_name} records have {match.field} = {record[match.source]!r}: "
                "crmsync will not guess which one is this record",
                object_name=flow.object_name,
            )
        return rows[0] if rows else None

    # -- target → source ---------------------------------------------------------------------------------
    def _reverse(
        self, flow: FlowRuntime, change: ClaimedChange, fields: dict[str, Any], at: datetime
    ) -> Plan:
        target_id = change.record_key
        link = links.find_by_target(self.rt.store, flow.name, flow.target, target_id)
        if link is None:
            return Plan.done(Applied.skip("not linked to a source record"))
        source_key = link.source_key
        board = self.rt.board_of(flow, flow.source) or ""
        if change.operation == "delete":
            if flow.on_delete == "ignore":
                return Plan.done(Applied.skip("on_delete is ignore"))

            def forget() -> Applied:
                self._forget(flow, source_key, target_id)
                return Applied("deleted", f"deleted source record {source_key}")

            delete = Write(key=source_key, operation="delete", target_id=source_key)
            return Plan((Step(flow.source, board, delete),), forget)
        known = self._shadow(flow, "target", target_id)
        back_fields = {r.target for r in flow.rules if r.to_source}
        edits = self._news(
            flow, "target", target_id, known, {k: v for k, v in fields.items() if k in back_fields}, at
        )
        edits = self._settle(flow, "target", target_id, source_key, edits, at)
        if not edits:
            return Plan.done(Applied.skip("no news (echo or unchanged)"))
        mapped = flow.to_source(target_id, edits)

        def remember() -> Applied:
            self.remember(flow, "target", target_id, edits, at)
            self.remember(flow, "source", source_key, mapped, at, written_at=datetime.now(UTC))
            return Applied("updated", f"updated source record {source_key}")

        update = Write(key=source_key, operation="update", fields=mapped, target_id=source_key)
        self.intend(flow, "source", source_key, mapped)
        return Plan((Step(flow.source, board, update),), remember)

    # -- shadow and conflicts -----------------------------------------------------------------------------
    def _shadow(self, flow: FlowRuntime, side: Side, record_id: str) -> dict[str, list[Any]]:
        system = flow.source if side == "source" else flow.target
        return dict(shadow.get_shadow(self.rt.store, system, f"{flow.name}:{side}", record_id) or {})

    def remember(
        self,
        flow: FlowRuntime,
        side: Side,
        record_id: str,
        fields: Mapping[str, Any],
        at: datetime,
        *,
        written_at: datetime | None = None,
    ) -> None:
        """Note ``fields`` as synced on ``side`` at ``at`` (what echo and conflict checks compare with);
        ``written_at``: when crmsync wrote them there (the values held before lasted until then)."""
        if not fields:
            return
        system = flow.source if side == "source" else flow.target
        old = self._shadow(flow, side, record_id)
        stamped: dict[str, list[Any]] = {}
        for name, value in fields.items():
            when = field_time(at, name)
            entry: list[Any] = [value, when.isoformat()]
            held = old.get(name)
            # values crmsync set out to write there, other than this one: each was held there from
            # its write (if it landed) until the next, so a late read of one is no edit either
            meant = [
                [i[0], i[1], None, True]
                for i in (held[4] if held is not None and len(held) > 4 else [])
                if i[0] != value
            ]
            if held is not None and held[0] != value:  # keep what it was just before, for late readers
                before = [held[0], held[1], *([held[3]] if len(held) > 3 and held[3] else [])]
                entry.append([*meant, before, *(held[2] if len(held) > 2 else [])][:RECENT])
            elif held is not None and (len(held) > 2 or meant):
                entry.append([*meant, *(held[2] if len(held) > 2 else [])][:RECENT])
            elif held is None and old and value is not None:
                # a field of a known record crmsync had no value for: it was empty until now
                entry.append([[None, when.isoformat()]])
            if written_at is not None:
                if len(entry) == 2:
                    entry.append([])
                entry.append(written_at.isoformat())
            stamped[name] = entry
        shadow.put_shadow(self.rt.store, system, f"{flow.name}:{side}", record_id, stamped)

    def intend(self, flow: FlowRuntime, side: Side, record_id: str, fields: Mapping[str, Any]) -> None:
        """Note, before writing them, the values crmsync is about to write on ``side``: a read of that
        side showing one of them before the write is noted as synced (by :meth:`remember`, which
        clears them) is crmsync's own echo — whether another worker read it meanwhile or the writer
        died between its write and its note."""
        system = flow.source if side == "source" else flow.target
        old = self._shadow(flow, side, record_id)
        now = datetime.now(UTC).isoformat()
        noted: dict[str, list[Any]] = {}
        for name, value in fields.items():
            held = old.get(name)
            if held is None or held[0] == value:  # nothing synced to tell an echo from, or no change
                continue
            entry = [*held[:2], held[2] if len(held) > 2 else [], held[3] if len(held) > 3 else None]
            entry.append([[value, now], *(held[4] if len(held) > 4 else [])][:RECENT])
            noted[name] = entry
        if noted:
            shadow.put_shadow(self.rt.store, system, f"{flow.name}:{side}", record_id, noted)

    def _forget(self, flow: FlowRuntime, key: str, target_id: str) -> None:
        shadow.delete_shadow(self.rt.store, flow.source, f"{flow.name}:source", key)
        shadow.delete_shadow(self.rt.store, flow.target, f"{flow.name}:target", target_id)
        with self.rt.store.begin() as conn:
            conn.execute(
                sa.delete(t.links).where(
                    t.links.c.source_system == flow.source,
                    t.links.c.source_key == key,
                    t.links.c.flow.in_([flow.name, *(f"{flow.name}:{r.object_name}" for r in flow.related)]),
                )
            )

    def _news(
        self,
        flow: FlowRuntime,
        side: Side,
        record_id: str,
        known: Mapping[str, list[Any]],
        fields: Mapping[str, Any],
        at: datetime,
    ) -> dict[str, Any]:
        """The fields of an incoming change that are news (:func:`~crmsync.engine.decide.news`); the
        stale ones are logged."""
        found = news(known, fields, at)
        for name in found.stale:
            self._log(flow, record_id, f"stale {side} value of {name!r} ignored: a newer one is synced")
        return found.fields

    def _settle(
        self,
        flow: FlowRuntime,
        side: Side,
        record_id: str,
        other_id: str,
        edits: dict[str, Any],
        at: datetime,
    ) -> dict[str, Any]:
        """Drop the edits that lose a conflict with a change of the other side still in the queue;
        when this side wins, the other side's losing values are remembered as superseded there (the
        winner's write follows), so the losing change, applied later, writes nothing."""
        if not edits:
            return edits
        other_side: Side = "target" if side == "source" else "source"
        other_system = flow.target if side == "source" else flow.source
        pending = self._pending(flow, other_system, other_id)
        if not pending:
            return edits
        settled = settle(flow, side, edits, at, pending, self._shadow(flow, other_side, other_id))
        for conflict in settled.conflicts:
            self._log(flow, record_id, conflict.message, outcome="conflict")
        for name, (value, their_at) in settled.lost.items():
            # the losing change is still queued: its value, remembered as the one the other side held
            # until the winner's write, arrives as no news and is never written back
            self.remember(flow, other_side, other_id, {name: value}, their_at)
        return settled.kept

    def _pending(
        self, flow: FlowRuntime, system: str, record_key: str
    ) -> list[tuple[dict[str, Any], datetime]]:
        c = t.changes.c
        with self.rt.store.read() as conn:
            rows = conn.execute(
                sa.select(c.payload, c.created_at).where(
                    c.flow == flow.name,
                    c.source == system,
                    c.record_key == record_key,
                    c.state.in_(("pending", "leased")),  # leased: perhaps in this very batch
                )
            ).all()
        return [(dict(r.payload or {}), r.created_at) for r in rows]

    # -- helpers -----------------------------------------------------------------------------------------
    def _target_fields(self, flow: FlowRuntime) -> set[str]:
        return {r.target for r in flow.rules if r.to_target}

    def _read_source(self, flow: FlowRuntime, key: str) -> dict[str, Any]:
        board = self.rt.board_of(flow, flow.source) or ""
        source = require(self.rt.connector(flow.source), Readable, f"flow {flow.name!r} (source)")
        for record in source.read_records(board, [key]):
            return dict(record.fields)
        raise FixTheData(f"source record {key} is gone", object_name=board, record=key)

    def _write(self, connector: Connector, object_name: str, write: Write) -> None:
        [result] = require(connector, Writable, f"a write to {object_name}").write_batch(object_name, [write])
        if not result.ok:
            raise result.error or FixTheData(
                f"{write.operation} refused", object_name=object_name, record=write.key
            )

    def _log(
        self, flow: FlowRuntime, key: str, message: str, outcome: Literal["conflict", "skipped"] = "skipped"
    ) -> None:
        try:
            record_many(
                self.rt.store, [LogEntry(flow=flow.name, record_key=key, outcome=outcome, message=message)]
            )
        except CrmsyncError:  # the log is not worth failing a change for
            log.warning("could not log: %s", message)
