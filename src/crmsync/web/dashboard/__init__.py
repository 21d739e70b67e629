"""The dashboard: what crmsync is doing, what needs a person, and the settings.

Server-rendered pages (Jinja2 templates in ``templates/``) made live by htmx, charts drawn by
Chart.js from the JSON the app serves under ``/api/v1/dashboard/`` (the same JSON another tool
can read); both libraries are vendored in ``static/vendor/`` from their npm packages, so nothing
is fetched at run time. Everything reads the store, so any replica answers any request.

See :mod:`.routes` for the pages and endpoints (their handlers by topic: :mod:`.login`,
:mod:`.monitoring`, :mod:`.jobs`, :mod:`.settings`, on :mod:`.base`), :mod:`.security` for
sessions and CSRF, :mod:`.data` for what the overview and the charts read.
"""
