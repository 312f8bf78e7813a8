"""The concerns of the web edge (web/edge.py), one module each."""
