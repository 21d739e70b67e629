"""``update-status-nudge``: set a card field (OK / Due / Overdue) from the days since the card last
changed, so that stale cards stand out and their owners update them.

"Last changed" comes from the board's own history of the card
(:class:`~crmsync.connectors.capabilities.ActivityLog`), leaving out changes to the status field itself (the
job's own writes) and to ``ignore_changes_to`` (e.g. the fields ``trello-refresh`` fills from
Salesforce). A card is **overdue** after ``overdue_after_days``, **due** after
``due_after_days``, else **OK**; only cards whose status changes are written.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from crmsync.connectors.base import Write
from crmsync.connectors.capabilities import ActivityLog, Readable
from crmsync.jobs.base import Job, JobContext, JobSettings
from crmsync.jobs.cards import write_cards
from crmsync.jobs.registry import job


class NudgeSettings(JobSettings):
    board: str = Field(description="The connection of the board (e.g. a trello connection).")
    card_object: str = Field("Card", description="The board's object holding the cards.")
    status_field: str = Field("Update status", description="The card field the status is written to.")
    due_after_days: int = Field(7, ge=0, description="Days without a change after which a card is due.")
    overdue_after_days: int = Field(14, ge=1, description="Days without a change after which it is overdue.")
    ok: str = Field("OK", description="The status of a card changed recently.")
    due: str = Field("Due", description="The status of a card due for an update.")
    overdue: str = Field("Overdue", description="The status of an overdue card.")
    ignore_changes_to: list[str] = Field(
        default_factory=list,
        description="Card fields whose changes do not count as an update (the status field never does).",
    )

    @model_validator(mode="after")
    def _ordered(self) -> NudgeSettings:
        if self.overdue_after_days <= self.due_after_days:
            raise ValueError("overdue_after_days must be more than due_after_days")
        return self


@job("update-status-nudge")
class UpdateStatusNudge(Job):
    """Set each card's status field (OK / Due / Overdue) from the days since it last changed."""

    Settings = NudgeSettings

    def run(self, ctx: JobContext) -> str:
        s: NudgeSettings = ctx.settings
        board = ctx.connector(s.board, Readable, "board")
        history = ctx.connector(s.board, ActivityLog, "board")
        ctx.progress(0, None, "reading cards")
        cards = [c for c in board.scan(s.card_object) if not c.deleted and c.fields.get("closed") is not True]
        ctx.progress(0, len(cards), "reading card history")
        changed = history.last_changed(
            s.card_object, [c.id for c in cards], ignoring=[s.status_field, *s.ignore_changes_to]
        )
        now = ctx.now()
        tally = {s.ok: 0, s.due: 0, s.overdue: 0}
        writes: list[Write] = []
        for card in cards:
            last = changed.get(card.id)
            if last is None:
                continue
            days = (now - last).total_seconds() / 86400
            status = (
                s.overdue if days >= s.overdue_after_days else s.due if days >= s.due_after_days else s.ok
            )
            tally[status] += 1
            if card.fields.get(s.status_field) != status:
                writes.append(Write(card.id, "update", {s.status_field: status}, target_id=card.id))
        refused = write_cards(ctx, s, writes, len(cards))
        counts = ", ".join(f"{n} {name}" for name, n in tally.items())
        return f"{len(cards)} cards ({counts}): {len(writes) - refused} statuses changed" + (
            f", {refused} refused" if refused else ""
        )
