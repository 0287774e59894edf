"""Logging: errors with their details to rotating files in instance/logs/."""
import logging
import os
from logging.handlers import RotatingFileHandler


def register_logging(app):
    """Send the app's log records at INFO and above to instance/logs/sipup.log, rotated at 10 MB."""
    folder = os.path.join(app.instance_path, "logs")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "sipup.log")
    logger = logging.getLogger("sipup")
    if not any(getattr(h, "baseFilename", None) == os.path.abspath(path) for h in logger.handlers):
        handler = RotatingFileHandler(path, maxBytes=10 * 1024 * 1024, backupCount=5, encoding="utf-8", delay=True)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(process)d]: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    app.logger.handlers.clear()
    app.logger.parent = logger
    app.logger.propagate = True
