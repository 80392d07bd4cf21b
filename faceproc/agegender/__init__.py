"""The age/gender model: architectures (architecture.py), what a run loads (spec.py: the one reader of model
cards), its files (files.py), the Keras backend (backend.py) and inference (runtime.py)."""
