"""The error every wrong setting raises, the prefix of the environment variables, and a value as an error may
show it."""

import re

ENV_PREFIX = "SIPUP"


class ConfigError(RuntimeError):
    """A configuration value is missing or wrong; the message names it and says why."""


def shown(value):
    """A setting's value as an error message may repeat it: the password of a URL replaced by ***."""
    text = str(value)
    if "://" in text and "@" in text:
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", text)
    return text
