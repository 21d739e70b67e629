"""Cards that follow their opportunities: ``trello-refresh`` and ``win-loss-mover``.

A card is linked to an opportunity by a field holding the opportunity's id (``link_field``, a
Trello custom field such as "Salesforce Opportunity Id"). Both jobs read every card of the board
once, the linked opportunities by id (Salesforce's 15- and 18-character ids both match), and
write only the cards that differ, one write per card with only what changed; archived cards
are left alone. They reach the board and the CRM through the ``Readable`` and ``Writable``
capabilities of their connections, whatever those are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from crmsync.connectors.base import Record, Write
from crmsync.connectors.capabilities import Readable, Writable
from crmsync.jobs.base import Job, JobContext, JobSettings
from crmsync.jobs.registry import job
from crmsync.jobs.values import same


class LinkedCardsSettings(JobSettings):
    board: str = Field(description="The connection of the board (e.g. a trello connection).")
    card_object: str = Field("Card", description="The board's object holding the cards.")
    crm: str = Field(description="The connection the opportunities are read from (e.g. salesforce).")
    opportunity_object: str = Field("Opportunity", description="The CRM's object the cards follow.")
    link_field: str = Field(
        "Salesforce Opportunity Id", description="The card field holding the opportunity's id."
    )


class RefreshSettings(LinkedCardsSettings):
    fields: dict[str, str] = Field(
        default_factory=lambda: {"Stage": "StageName", "Amount": "Amount", "Close date": "CloseDate"},
        description="Card field → the opportunity field it shows.",
    )


class WinLossSettings(LinkedCardsSettings):
    stage_field: str = Field("StageName", description="The opportunity field holding its stage.")
    won_stages: list[str] = Field(["Closed Won"], description="Stages that mean won.")
    lost_stages: list[str] = Field(["Closed Lost"], description="Stages that mean lost.")
    won_list: str = Field("Won", description="The list a won opportunity's card belongs in.")
    lost_list: str = Field("Lost", description="The list a lost opportunity's card belongs in.")
    list_field: str = Field("list", description="The card field naming its list (written to move it).")


@dataclass
class Linked:
    """The board's open cards that name an opportunity, and those opportunities (by 15-char id)."""

    cards: list[Record]
    opportunities: dict[str, Record]
    without_link: int

    def opportunity(self, card: Record, link_field: str) -> Record | None:
        return self.opportunities.get(str(card.fields.get(link_field) or "").strip()[:15])


def linked(ctx: JobContext, s: LinkedCardsSettings, crm_fields: Sequence[str]) -> Linked:
    """Read the board's open cards and the opportunities they name."""
    board = ctx.connector(s.board, Readable, "board")
    crm = ctx.connector(s.crm, Readable, "crm")
    ctx.progress(0, None, "reading cards")
    cards: list[Record] = []
    without = 0
    for card in board.scan(s.card_object):
        if card.deleted or card.fields.get("closed") is True:
            continue
        if str(card.fields.get(s.link_field) or "").strip():
            cards.append(card)
        else:
            without += 1
    ids = sorted({str(c.fields[s.link_field]).strip() for c in cards})
    ctx.progress(0, len(cards), "reading opportunities")
    found = {r.id[:15]: r for r in crm.read_records(s.opportunity_object, ids) if not r.deleted}
    missing = [i for i in ids if i[:15] not in found]
    if missing:
        ctx.logger.warning("%d linked opportunities not found: %s", len(missing), ", ".join(missing[:10]))
    return Linked(cards, found, without)


def write_cards(ctx: JobContext, s: Any, writes: list[Write], total: int) -> int:
    """Write ``writes`` to ``s.board``'s ``s.card_object`` in batches; how many were refused (each
    logged)."""
    if not writes:
        ctx.progress(total, total, "cards")
        return 0
    board = ctx.connector(str(s.board), Writable, "board")
    size = max(1, board.max_batch_size(s.card_object))
    refused = 0
    for start in range(0, len(writes), size):
        for result in board.write_batch(str(s.card_object), writes[start : start + size]):
            if not result.ok:
                refused += 1
                ctx.logger.warning("card %s refused: %s", result.key, result.error)
        ctx.progress(min(start + size, len(writes)), len(writes), "cards written")
    return refused


def _refused(n: int) -> str:
    return f", {n} refused" if n else ""


@job("trello-refresh")
class TrelloRefresh(Job):
    """Push the opportunities' latest data (stage, amount, close date) onto their cards, only what changed."""

    Settings = RefreshSettings

    def run(self, ctx: JobContext) -> str:
        s: RefreshSettings = ctx.settings
        data = linked(ctx, s, list(s.fields.values()))
        writes: list[Write] = []
        fields_written = unknown = 0
        for card in data.cards:
            opp = data.opportunity(card, s.link_field)
            if opp is None:
                unknown += 1
                continue
            changed = _changes(card.fields, opp.fields, s.fields)
            if changed:
                fields_written += len(changed)
                writes.append(Write(card.id, "update", changed, target_id=card.id))
        refused = write_cards(ctx, s, writes, len(data.cards))
        return (
            f"{len(data.cards)} linked cards: {len(writes) - refused} updated ({fields_written} fields), "
            f"{len(data.cards) - len(writes) - unknown} unchanged, {unknown} opportunities not found"
            + _refused(refused)
        )


def _changes(card: Mapping[str, Any], opp: Mapping[str, Any], fields: Mapping[str, str]) -> dict[str, Any]:
    return {c: opp.get(o) for c, o in fields.items() if not same(card.get(c), opp.get(o))}


@job("win-loss-mover")
class WinLossMover(Job):
    """Move the card of a won or lost opportunity to the matching list when it is elsewhere."""

    Settings = WinLossSettings

    def run(self, ctx: JobContext) -> str:
        s: WinLossSettings = ctx.settings
        data = linked(ctx, s, [s.stage_field])
        writes: list[Write] = []
        won = lost = 0
        for card in data.cards:
            opp = data.opportunity(card, s.link_field)
            stage = None if opp is None else opp.fields.get(s.stage_field)
            target = s.won_list if stage in s.won_stages else s.lost_list if stage in s.lost_stages else None
            if target is None:
                continue
            won += target == s.won_list
            lost += target == s.lost_list
            if card.fields.get(s.list_field) != target:
                writes.append(Write(card.id, "update", {s.list_field: target}, target_id=card.id))
        refused = write_cards(ctx, s, writes, len(data.cards))
        return (
            f"{won} won and {lost} lost opportunities' cards: {len(writes) - refused} moved, "
            f"{won + lost - len(writes)} already in place" + _refused(refused)
        )
