"""gunicorn settings of `runall`, the Docker image and docker-compose (`-c config/gunicorn.py`).

With several workers, each keeps its metrics in files under PROMETHEUS_MULTIPROC_DIR and
/metrics sums them; a worker that exits must be marked dead so its live gauges go with it.
"""

import os

wsgi_app = "config.wsgi:application"


def child_exit(server, worker) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
