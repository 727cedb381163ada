"""The web entry point: `gunicorn --config gunicorn.conf.py wsgi:app` (and the flask CLI's app)."""

from webapp import create_app
from webapp.ops.logs import configure
from webapp.settings import config

config.check_or_exit()  # a malformed setting: one line, exit 2
app = create_app()
configure(app.config["LOG_LEVEL"], app.config["LOG_FORMAT"])
