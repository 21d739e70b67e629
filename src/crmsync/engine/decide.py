"""What syncing a source record does: one pure, typed decision for every path.

The worker (a webhook's or a poll's change), ``crmsync preview`` and ``crmsync sync`` all decide
here (:func:`news`: what a change says that was not synced yet, compared strictly with the shadow;
:func:`settle` and :func:`winner`: a conflict settled by the flow's policy; :func:`decide`: create /
update / skip with a reason) and compute a new record's values here (:func:`creation`), so they
cannot drift apart: the same source record gives the same target fields and the same related
records, whichever path saw it.

A field the source did not send is empty, not absent: a transform that fills an empty value
(``date`` with ``default_days``) is applied whether the record came from a webhook carrying some
columns or from a full read of the board. :func:`needs_full_read` tells a path holding part of a
record that it must read the rest before creating it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from crmsync.connectors.stamps import try_stamp
from crmsync.engine.flows import FlowRuntime


@dataclass(frozen=True)
class RelatedValues:
    """A related record made with the main one: its object, fields and references to the others."""

    object_name: str
    fields: dict[str, Any]
    refs: dict[str, str]


@dataclass(frozen=True)
class Creation:
    """The target record a source record becomes, with its related records (in creation order)."""

    fields: dict[str, Any]
    related: tuple[RelatedValues, ...]


def source_fields(flow: FlowRuntime) -> frozenset[str]:
    """Every source field a rule sends to the target: the record's and its related objects'."""
    rules = [*flow.rules, *(r for rel in flow.related for r in rel.rules)]
    return frozenset(r.source for r in rules if r.to_target)


def needs_full_read(flow: FlowRuntime, record: Mapping[str, Any]) -> bool:
    """Does ``record`` lack a field the target record (or a related one) is made from?"""
    return not source_fields(flow) <= set(record)


def creation(flow: FlowRuntime, key: str, record: Mapping[str, Any]) -> Creation:
    """The values creating ``record`` writes; a field ``record`` does not hold is taken as empty."""
    whole = {name: None for name in source_fields(flow) if name != flow.key_field} | dict(record)
    return Creation(
        fields=flow.to_target(key, whole, owned=False),
        related=tuple(
            RelatedValues(rel.object_name, flow.to_target(key, whole, rel.rules, owned=False), dict(rel.refs))
            for rel in flow.related
        ),
    )


# -- the decision ----------------------------------------------------------------------------------------
Side = Literal["source", "target"]
Action = Literal["create", "update", "skip"]


@dataclass(frozen=True)
class Decision:
    """What syncing one source record does to the target: a typed value, never text to parse.

    - ``create``: ``creation`` holds the record and its related records;
    - ``update``: ``fields`` holds the target's fields that change;
    - ``skip``: ``reason`` says why (``when`` not matched, no news).
    """

    action: Action
    reason: str = ""
    creation: Creation | None = None
    fields: dict[str, Any] = field(default_factory=dict)


def decide(
    flow: FlowRuntime,
    key: str,
    record: Mapping[str, Any],
    *,
    linked: bool,
    news: Mapping[str, Any] | None = None,
) -> Decision:
    """The one decision the worker, ``crmsync preview`` and ``crmsync sync`` share (pure).

    ``record``: the source record as known (whole, or completed by a read); ``linked``: it has a
    counterpart on the target; ``news``: the fields that changed since the last sync (None: all of
    ``record``) — after echo suppression and conflicts (:func:`winner`).
    """
    if not linked:
        if not flow.matches_when(record):
            name = flow.when.field if flow.when is not None else ""
            return Decision("skip", f"{name} is {record.get(name)!r}: does not match the flow's when")
        return Decision("create", creation=creation(flow, key, record))
    changed = dict(record) if news is None else dict(news)
    if not changed:
        return Decision("skip", "no news (echo or unchanged)")
    return Decision("update", fields=flow.to_target(key, changed, owned=False))


def winner(policy: str, owned_by_source: bool, side: Side, at: datetime, their_at: datetime) -> Side:
    """Who wins a field both sides changed: ``side`` changed it at ``at``, the other at ``their_at``.

    ``owner_wins`` (the field's owner), ``source_wins``, ``target_wins``, ``newest_wins`` (a tie
    goes to ``side``, the change being applied).
    """
    if policy == "source_wins":
        return "source"
    if policy == "target_wins":
        return "target"
    if policy == "owner_wins":
        return "source" if owned_by_source else "target"
    other: Side = "target" if side == "source" else "source"
    return side if at >= their_at else other


# -- what is news, and conflicts (pure: the worker, preview and sync ask the same) ------------------------
#: Salesforce stamps whole seconds: a change stamped so may have happened up to a second later
CLOCK_SLACK = timedelta(seconds=1)
#: fields a trigger adds to tell when the change happened at its origin (not synced)
STAMPS = ("_at", "SystemModstamp")


def stamped_at(fields: Mapping[str, Any]) -> datetime | None:
    """When a change happened at its origin, from the stamp its trigger added (None: not stamped)."""
    return try_stamp(next((fields.get(s) for s in STAMPS if fields.get(s)), None))


class ChangeTime(datetime):
    """When a change folded from several happened (its newest part), and when each of its fields
    did: a field's value keeps the time of the part it came from. Without this, a value carried by
    an older part (say a late echo of crmsync's own write) would pass for as new as the newest
    part, and win over a newer value synced meanwhile."""

    fields: Mapping[str, datetime]

    @classmethod
    def of_parts(cls, newest: datetime, fields: Mapping[str, datetime]) -> ChangeTime:
        made = cls.fromisoformat(newest.isoformat())
        made.fields = dict(fields)
        return made

    def of(self, name: str) -> datetime:
        return self.fields.get(name, self)


def field_time(at: datetime, name: str) -> datetime:
    """When ``name`` changed, of a change made at ``at`` (a :class:`ChangeTime` knows each field's)."""
    return at.of(name) if isinstance(at, ChangeTime) else at


def change_time(
    flow: FlowRuntime,
    side: Side,
    fields: Mapping[str, Any],
    created_at: datetime,
    parts: Sequence[tuple[str, Mapping[str, Any], datetime]] = (),
) -> datetime:
    """When a change (``fields``, queued at ``created_at``) happened at its origin: its stamp; for a
    change folded from ``parts``, a :class:`ChangeTime` holding each field's own time — under the
    field's name on both sides of the flow, so the shadows of either side are stamped with it."""
    if not parts:
        return stamped_at(fields) or created_at
    times: dict[str, datetime] = {}
    for operation, payload, queued in parts:
        if operation == "delete":
            times = {}
            continue
        when = stamped_at(payload) or queued
        times |= {name: when for name in payload if name not in STAMPS}
    if not times:
        return stamped_at(fields) or created_at
    for rule in flow.rules:
        mine, theirs = (rule.source, rule.target) if side == "source" else (rule.target, rule.source)
        if mine in times:
            times.setdefault(theirs, times[mine])
    return ChangeTime.of_parts(max(times.values()), times)


@dataclass(frozen=True)
class News:
    """The fields of an incoming change that are news, and those dropped as stale."""

    fields: dict[str, Any]
    stale: tuple[str, ...] = ()


def news(known: Mapping[str, Sequence[Any]], fields: Mapping[str, Any], at: datetime) -> News:
    """Compare a change's ``fields`` (made at ``at``: a :class:`ChangeTime` says when each field was)
    with what was last synced on its side (``known``: the shadow, ``[value, iso time, recent
    values]`` per field), strictly.

    Not news: the value held (an echo of crmsync's own write, or unchanged), a value crmsync set out
    to write there (its echo, read before the write was noted), or a value the side held a moment
    before (a late read of a superseded version). Stale: older than the value held.
    """
    out: dict[str, Any] = {}
    stale: list[str] = []
    whole = at
    for name, value in fields.items():
        at = field_time(whole, name)
        # a whole-second stamp (Salesforce's) may be up to a second later than it reads
        slack = CLOCK_SLACK if at.microsecond == 0 else timedelta(0)
        held = known.get(name)
        if held is not None and held[0] == value:
            continue
        if held is not None and _intended(held, value, at):
            continue
        if held is not None and len(held) > 2 and _superseded(held, value, at, slack):
            continue
        if held is not None and (try_stamp(held[1]) or at) > at + slack:
            stale.append(name)
            continue
        out[name] = value
    return News(out, tuple(stale))


#: how long a value crmsync set out to write counts as its own: a write whose worker died before
#: noting it as synced is made again (its lease runs out) well within this
INTENT_TTL = timedelta(hours=6)


def _intended(held: Sequence[Any], value: Any, at: datetime) -> bool:
    """Whether ``value`` is one crmsync set out to write there (``held[4]``: ``[value, when]``, newest
    first): read back before the write was noted as synced (another worker read it meanwhile, or
    the writer died), it is crmsync's own echo, not an edit."""
    if len(held) < 5:
        return False
    for wanted, when in held[4]:
        since = try_stamp(when)
        if wanted == value and (since is None or at <= since + INTENT_TTL):
            return True
    return False


def _superseded(held: Sequence[Any], value: Any, at: datetime, slack: timedelta) -> bool:
    """Whether a read stamped ``at`` showing ``value`` is a version the side held before: one of its
    recent values (newest first, each ``[value, when it was recorded, when crmsync wrote it there,
    meant]`` — the last two only for values crmsync wrote, or set out to write), read no later than
    the moment the next value replaced it there (or than its own recording, which a settled conflict
    may date after the winner's write). A value crmsync wrote replaced the one before when it was
    written, not when it was made on the other side; one it only set out to write (whose write may
    not have landed) replaced nothing for sure."""
    until = try_stamp(held[1]) or at
    if len(held) > 3:  # when crmsync wrote the value there: what that side held before lasted until then
        until = max(until, try_stamp(held[3]) or until)
    for old, when, *more in held[2]:
        recorded = try_stamp(when) or until
        meant = len(more) > 1 and bool(more[1])  # a write crmsync set out to make: landed, or not
        # a read stamped at the very moment the next value came cannot be ordered: it is news
        if old == value and (at < until + slack or (not meant and at <= recorded + slack)):
            return True
        if meant:  # it may never have landed: the value before it may have lasted until the next
            continue
        came = try_stamp(more[0]) if more and more[0] else None
        until = max(recorded, came) if came is not None else recorded
    return False


@dataclass(frozen=True)
class Conflict:
    """A field both sides changed, settled by the flow's policy."""

    source_field: str
    target_field: str
    policy: str
    won: Side

    @property
    def message(self) -> str:
        return (
            f"conflict on {self.source_field}/{self.target_field}: both sides changed it; "
            f"{self.policy} → the {self.won} wins"
        )


@dataclass(frozen=True)
class Settled:
    """The edits left after conflicts (``kept``), the conflicts, and the other side's values that
    lost (field → value, when it was made): remembered there, so their change writes nothing."""

    kept: dict[str, Any]
    conflicts: tuple[Conflict, ...] = ()
    lost: dict[str, tuple[Any, datetime]] = field(default_factory=dict)


def settle(
    flow: FlowRuntime,
    side: Side,
    edits: Mapping[str, Any],
    at: datetime,
    pending: Sequence[tuple[Mapping[str, Any], datetime]],
    other_known: Mapping[str, Sequence[Any]],
) -> Settled:
    """Settle ``side``'s ``edits`` (made at ``at``) against the other side's changes of the same record
    still queued (``pending``: payload, queued at), by :func:`winner`; ``other_known``: the other
    side's shadow (a queued value equal to it is no change of that side)."""
    kept = dict(edits)
    if not kept or not pending:
        return Settled(kept)
    conflicts: list[Conflict] = []
    lost: dict[str, tuple[Any, datetime]] = {}
    for rule in flow.rules:
        mine, theirs = (rule.source, rule.target) if side == "source" else (rule.target, rule.source)
        if mine not in kept:
            continue
        for payload, created in pending:
            if theirs not in payload:
                continue
            their_at = stamped_at(payload) or created
            # only a queued value that is news on its side conflicts: not an echo, nor a late read of
            # a version that side held before crmsync wrote over it
            if theirs in news(other_known, {theirs: payload[theirs]}, their_at).fields:
                won = winner(flow.conflict_policy, rule.owned_by_source, side, field_time(at, mine), their_at)
                conflicts.append(Conflict(rule.source, rule.target, flow.conflict_policy, won))
                if won != side:
                    kept.pop(mine)
                else:
                    lost[theirs] = (payload[theirs], their_at)
                break
    return Settled(kept, tuple(conflicts), lost)
