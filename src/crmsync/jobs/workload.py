"""``workload-snapshot``: cards per list, member and status into the reporting database's
snapshot table, one row set per day and board (a rerun the same day replaces that day's rows).

A card with several members counts once for each; a card with none counts under member NULL.
Archived cards are left out.
"""

from __future__ import annotations

from collections import Counter

from pydantic import Field

from crmsync.connectors.capabilities import Readable, ReportingTables
from crmsync.connectors.sql.changes import SnapshotRow
from crmsync.jobs.base import Job, JobContext, JobSettings
from crmsync.jobs.registry import job


class WorkloadSettings(JobSettings):
    board: str = Field(description="The connection of the board (e.g. a trello connection).")
    card_object: str = Field("Card", description="The board's object holding the cards.")
    target: str = Field(description="The reporting connection (type sql) holding the snapshot table.")
    board_name: str | None = Field(
        None, description="The snapshot's board column (default: the board's connection name)."
    )
    list_field: str = Field("list", description="The card field naming its list.")
    member_field: str = Field("members", description="The card field listing its members.")
    status_field: str | None = Field(
        "Update status", description="The card field holding its status (null: no status column)."
    )


@job("workload-snapshot")
class WorkloadSnapshot(Job):
    """Count the board's cards per list, member and status into today's workload snapshot."""

    Settings = WorkloadSettings

    def run(self, ctx: JobContext) -> str:
        s: WorkloadSettings = ctx.settings
        board = ctx.connector(s.board, Readable, "board")
        snapshot = ctx.connector(s.target, ReportingTables, "target")
        counts: Counter[tuple[str, str | None, str | None]] = Counter()
        cards = 0
        ctx.progress(0, None, "reading cards")
        for card in board.scan(s.card_object):
            if card.deleted or card.fields.get("closed") is True:
                continue
            cards += 1
            list_name = str(card.fields.get(s.list_field) or "")
            raw_status = card.fields.get(s.status_field) if s.status_field else None
            status = None if raw_status in (None, "") else str(raw_status)
            members = card.fields.get(s.member_field) or []
            if isinstance(members, str):
                members = [members]
            for member in members or [None]:
                counts[(list_name, None if member is None else str(member), status)] += 1
        day = ctx.now().date()
        rows = [
            SnapshotRow(list_name, member, status, n) for (list_name, member, status), n in counts.items()
        ]
        written = snapshot.write_snapshot(day, rows, board=s.board_name or s.board)
        ctx.progress(cards, cards, "cards")
        board_name = s.board_name or s.board
        return f"{cards} cards in {written} snapshot rows for {day.isoformat()} (board {board_name})"
