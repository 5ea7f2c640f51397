"""Inkstone's application layer: settings, the SQLite store and the services the UI and CLI call.

No NiceGUI here, and no torch at import time: services hand long work to jobs.
"""
