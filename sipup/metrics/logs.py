"""Logging: errors with their details to rotating files in instance/logs/."""

import logging
import os

from sipup.files import PrivateRotatingFileHandler, private_folder


def register_logging(app):
    """Send the app's log records at INFO and above to instance/logs/sipup.log, rotated at 10 MB."""
    folder = os.path.join(app.instance_path, "logs")
    private_folder(folder)
    path = os.path.abspath(os.path.join(folder, "sipup.log"))
    # Flask names app.logger after the app, so this is app.logger too, and the parent of sipup.* loggers.
    logger = logging.getLogger("sipup")
    ours = [h for h in logger.handlers if getattr(h, "sipup_log", False)]
    if [h.baseFilename for h in ours] != [path]:
        # One log per process: an app built later (tests build many) takes over from the one before.
        for handler in ours:
            logger.removeHandler(handler)
            handler.close()
        handler = PrivateRotatingFileHandler(
            path, maxBytes=10 * 1024 * 1024, backupCount=5, encoding="utf-8", delay=True
        )
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(process)d]: %(message)s"))
        handler.sipup_log = True
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
