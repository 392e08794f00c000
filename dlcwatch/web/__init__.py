"""The read-only web page (`dlcwatch web`): overview, videos, jobs, QC pictures, JSON.

- ``access``: where it listens and the token it asks for (no web framework needed).
- ``reader``: the state database, opened read-only for each request.
- ``files``: the pictures and clips of a delivered video, found through its manifest.
- ``app``: the pages (Starlette, Jinja2 templates in ``templates/``).
- ``server``: uvicorn.
"""
