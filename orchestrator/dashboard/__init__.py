"""The live dashboard at `/dashboard`: a static page, and the JSON it draws every few seconds.

A sub-package because it is one concept in three parts, plus the page's files:

    window.py    the last hour of the ledger's request log, aggregated inside the ledger's owner (SQL)
    reader.py    that window read through the ledger's owner, one read shared by every viewer for a moment
    summary.py   the JSON document from that window and the scheduler's state of now (pure)
    routes.py    the HTTP side: the page, its files, `GET /dashboard/data` (master key once keys exist)
    static/      index.html, dashboard.js (charts drawn as SVG by hand), dashboard.css: no build, no CDN

Request figures come from the ledger, so they are every gateway replica's
(cluster-wide); the local queue, the spill states and the burst budget are
what the answering replica's scheduler sees (the queue and the budget are
themselves cluster-wide through the load board).
"""

from orchestrator.dashboard.routes import add_dashboard_routes

__all__ = ["add_dashboard_routes"]
