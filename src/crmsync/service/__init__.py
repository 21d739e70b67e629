"""The composition layer: builds crmsync's processes from the layers below.

``crmsync run`` (everything in one process), ``crmsync serve`` (the web app), ``crmsync worker``
(workers, pollers, reconcilers, the alert watchdog) and ``crmsync scheduler`` (cron jobs) are each
a :class:`~crmsync.service.process.Process` over one :class:`~crmsync.engine.runtime.Runtime`;
any of them may run many times against one store. Only this package (and the command line above
it) imports both the engine and the web app.
"""
