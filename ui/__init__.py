"""Inkstone's web UI (NiceGUI): one module a page under ui/pages, a shared frame, one translation helper.

Pages never import torch or the engine on a request path and never block a handler: they read rows on a
timer and hand long work to jobs.
"""
