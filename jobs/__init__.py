"""The one local job queue: huey on SQLite, a consumer process, and one subprocess per job.

Every long piece of work (model import, data prep, training, evaluation, export, a model server) is a job:
a row in the app database that the web app and CLI watch, and a huey message that the consumer runs.
"""
