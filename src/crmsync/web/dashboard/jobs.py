"""The jobs: the configured ones with their next and last runs, the recent runs, and a run
started by hand — as a page (its list refreshed by htmx) and as JSON.

A job started here runs in a thread of this process, through the scheduler's own
:func:`~crmsync.scheduler.scheduler.run_job`: its run and progress are recorded in the store like
any other, so every replica's Jobs page shows it. Starting one needs the admin role.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from crmsync.scheduler import runs
from crmsync.scheduler.scheduler import run_job, specs_from_config
from crmsync.web.dashboard import data
from crmsync.web.dashboard.base import DashboardBase, back
from crmsync.web.dashboard.security import Session
from crmsync.web.errors import ApiError

log = logging.getLogger(__name__)


class JobStarted(BaseModel):
    """A job run started by hand; follow it on GET /api/v1/dashboard/jobs."""

    job: str
    started: bool


class JobPages(DashboardBase):
    """The Jobs page, its fragment, its JSON, and running a job now."""

    def _jobs(self) -> dict[str, Any]:
        return {
            "jobs": data.jobs(self.rt),
            "recent": [data.run_as_dict(r) for r in runs.recent(self.rt.store, limit=20)],
        }

    async def jobs_page(self, request: Request, session: Session) -> Response:
        return self.render(
            request,
            "jobs.html",
            session,
            jobs=await self.run(self._jobs),
            notice=request.query_params.get("notice"),
        )

    async def jobs_fragment(self, request: Request, session: Session) -> Response:
        return self.render(request, "_jobs.html", session, jobs=await self.run(self._jobs))

    def start_job(self, name: str) -> bool:
        specs = specs_from_config(self.rt.config)
        if name not in specs:
            return False
        thread = threading.Thread(
            target=run_job,
            args=(self.rt.store, name, specs[name]),
            kwargs={"config": self.rt.config, "runtime": self.rt},
            name=f"job-{name}",
            daemon=True,
        )
        thread.start()
        return True

    async def run_job_form(self, request: Request, session: Session) -> Response:
        name = request.path_params["name"]
        started = self.start_job(name)
        log.info("%s started job %s", session.user, name)
        return back("/jobs", f"{name} started" if started else f"no job {name}")

    async def jobs_json(self, request: Request, session: Session) -> Any:
        return await self.run(self._jobs)

    async def run_job_json(self, request: Request, session: Session) -> Any:
        name = request.path_params["name"]
        if not self.start_job(name):
            raise ApiError(
                404, "not_found", f"no job {name!r}; valid: {', '.join(specs_from_config(self.rt.config))}"
            )
        return JobStarted(job=name, started=True).model_dump()
