"""What crmsync is doing and what needs a person: the overview, the charts, the dead letters and
a record's trace — each as a page and as JSON.

The overview and the charts are read by :mod:`.data`; dead letters and traces go through
:mod:`crmsync.engine.operations`, the code behind ``crmsync dead-letters`` and ``crmsync log``, so
a replay or a discard here does what the command does. Replaying and discarding need the admin
role (checked by the wrappers of :mod:`.base`).
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, Field, ValidationError
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from crmsync.engine import operations
from crmsync.web.dashboard import data
from crmsync.web.dashboard.base import DashboardBase, back, form_text, number
from crmsync.web.dashboard.security import Session
from crmsync.web.errors import ApiError

log = logging.getLogger(__name__)


class LetterIds(BaseModel):
    """Dead letters to replay."""

    ids: list[int] = Field(min_length=1, max_length=1000, description="The dead letters' ids.")


class DiscardLetters(LetterIds):
    """Dead letters to discard, and why."""

    reason: str = Field(min_length=1, max_length=2000, description="Why they are discarded (kept with them).")


class Done(BaseModel):
    """What an action did."""

    done: int = Field(
        description="How many it acted on (letters already replayed or discarded are left alone)."
    )
    of: int = Field(description="How many were asked for.")


class MonitoringPages(DashboardBase):
    """The overview, the charts, the dead letters and the trace."""

    # -- overview, charts -------------------------------------------------------------------------

    async def overview_page(self, request: Request, session: Session) -> Response:
        return self.render(request, "overview.html", session, overview=await self.run(data.overview, self.rt))

    async def overview_fragment(self, request: Request, session: Session) -> Response:
        return self.render(
            request, "_overview.html", session, overview=await self.run(data.overview, self.rt)
        )

    async def charts_page(self, request: Request, session: Session) -> Response:
        return self.render(
            request, "charts.html", session, hours=number(request.query_params.get("hours"), 1)
        )

    async def overview_json(self, request: Request, session: Session) -> Any:
        return await self.run(data.overview, self.rt)

    async def charts_json(self, request: Request, session: Session) -> Any:
        return await self.run(data.charts, self.rt, number(request.query_params.get("hours"), 1))

    # -- dead letters ---------------------------------------------------------------------------

    def _letters(self, request: Request) -> list[dict[str, Any]]:
        q = request.query_params
        state = q.get("state") or None
        found = operations.list_letters(
            self.rt.queue,
            flow=q.get("flow") or None,
            state=state if state in ("open", "replayed", "discarded") else None,  # type: ignore[arg-type]
            search=q.get("q") or None,
            limit=min(number(q.get("limit"), 100), 1000),
        )
        return [operations.letter_as_dict(x) for x in found]

    async def letters_page(self, request: Request, session: Session) -> Response:
        letters = await self.run(self._letters, request)
        return self.render(
            request,
            "dead_letters.html",
            session,
            letters=letters,
            flows=list(self.rt.config.flows),
            query=dict(request.query_params),
            notice=request.query_params.get("notice"),
        )

    async def letter_page(self, request: Request, session: Session) -> Response:
        letter = await self.run(self.rt.queue.dead_letter, number(request.path_params["id"], 0))
        if letter is None:
            return self.refusal(request, session, 404, "no such dead letter")
        return self.render(request, "dead_letter.html", session, letter=operations.letter_as_dict(letter))

    async def replay_form(self, request: Request, session: Session) -> Response:
        ids = _ids(await request.form())
        done = await self.run(operations.replay_letters, self.rt.queue, ids)
        log.info("%s replayed %d of dead letters %s", session.user, done, ids)
        return back("/dead-letters", f"replayed {done} of {len(ids)}")

    async def discard_form(self, request: Request, session: Session) -> Response:
        form = await request.form()
        ids, reason = _ids(form), (form_text(form, "reason") or "").strip()
        if not reason:
            return back("/dead-letters", "say why they are discarded")
        done = await self.run(operations.discard_letters, self.rt.queue, ids, reason)
        log.info("%s discarded %d of dead letters %s: %s", session.user, done, ids, reason)
        return back("/dead-letters", f"discarded {done} of {len(ids)}")

    async def letters_json(self, request: Request, session: Session) -> Any:
        return {"letters": await self.run(self._letters, request)}

    async def letter_json(self, request: Request, session: Session) -> Any:
        letter = await self.run(self.rt.queue.dead_letter, number(request.path_params["id"], 0))
        if letter is None:
            raise ApiError(404, "not_found", "no such dead letter")
        return operations.letter_as_dict(letter)

    async def replay_json(self, request: Request, session: Session) -> Any:
        body = _body(LetterIds, await request.body())
        done = await self.run(operations.replay_letters, self.rt.queue, body.ids)
        return Done(done=done, of=len(body.ids)).model_dump()

    async def discard_json(self, request: Request, session: Session) -> Any:
        body = _body(DiscardLetters, await request.body())
        done = await self.run(operations.discard_letters, self.rt.queue, body.ids, body.reason)
        return Done(done=done, of=len(body.ids)).model_dump()

    # -- trace ----------------------------------------------------------------------------------

    def _trace(self, request: Request) -> dict[str, Any]:
        record = (request.query_params.get("record") or "").strip() or None
        flow = request.query_params.get("flow") or None
        found, entries = operations.trace(self.rt.store, flow=flow, record=record, limit=100)
        return operations.trace_as_json(record, found, entries)

    async def trace_page(self, request: Request, session: Session) -> Response:
        return self.render(request, "trace.html", session, trace=await self.run(self._trace, request))

    async def trace_json(self, request: Request, session: Session) -> Any:
        return await self.run(self._trace, request)


def _ids(form: FormData) -> list[int]:
    return [int(v) for v in form.getlist("ids") if isinstance(v, str) and v.isdigit()][:1000]


def _body(model: type[BaseModel], raw: bytes) -> Any:
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        details = [
            {"loc": ".".join(str(p) for p in e["loc"]), "message": e["msg"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        raise ApiError(422, "invalid_value", "the body is not valid", details) from exc
