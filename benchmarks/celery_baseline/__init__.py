"""The design esl-assets replaces: Celery tasks on a Redis broker, a prefork pool.

``app`` defines the Celery app and its one task; ``driver`` plans the jobs of a
CSV dictionary, enqueues them all and waits for every result.
"""
