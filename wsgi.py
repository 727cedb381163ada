"""The web entry point: `gunicorn --config gunicorn.conf.py wsgi:app`."""

from webapp import create_app
from webapp.logs import configure

app = create_app()
configure(app.config["LOG_LEVEL"], app.config["LOG_FORMAT"])
