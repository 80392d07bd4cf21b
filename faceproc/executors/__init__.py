"""Executors: who runs the shards of a plan (faceproc/engine.py drives them; the Ray one lives there)."""
