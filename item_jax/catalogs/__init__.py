"""Catalogs to train on: the embedded procedural default (`synthetic.py`) and the emoji set
(`emoji.py`, drawn with `svg_render.py`). Each writes a manifest
(docs/design.md, "Data format") and its images."""
