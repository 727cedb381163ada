"""gunicorn settings for the bench: the project's own gunicorn.conf.py, access log off.

The bench starts gunicorn with `--workers 1` on its own port; everything else
(gevent worker class, timeouts, WORKER_CONNECTIONS from the environment) is
the production file's. Only the access log goes: at thousands of long-polls a
second it would measure the log formatter rather than the service.
"""

import runpy
from pathlib import Path

_PROJECT_CONFIG = Path(__file__).resolve().parents[1] / "gunicorn.conf.py"

globals().update(
    (name, value)
    for name, value in runpy.run_path(str(_PROJECT_CONFIG)).items()
    if not name.startswith("__")
)
accesslog = None
