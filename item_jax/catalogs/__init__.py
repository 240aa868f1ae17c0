"""Catalogs to train on: the embedded procedural default (`synthetic.py`) and the emoji set
(`emoji.py`, drawn with `svg_render.py`). Each writes an ITEM_SPEC manifest and its images."""
