"""The process tree of ``twistd mqttd`` with ``server.workers >= 1``: the master and the
children it supervises (broker workers, one ingest child).

``supervisor`` starts, restarts (with backoff) and stops the children; ``proctitle``
names the processes so that ``ps`` tells them apart.
"""
