"""The read-only web page (`dlcwatch web`): overview, videos, jobs, QC pictures, JSON.

- ``access``: where it listens and the token it asks for (no web framework needed).
- the state database is opened read-only for each request (``store.ReadOnlyStore``: all SQL is in store.py).
- ``files``: the pictures and clips of a delivered video, found through its manifest.
- ``app``: the pages (Starlette, Jinja2 templates in ``templates/``).
- ``server``: uvicorn.
"""
