"""The web desk (F19, F21): login, the queue board and the case workspace, server-rendered with
Jinja templates and htmx (vendored, no build step), under ``/desk``."""
