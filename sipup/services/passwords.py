"""The one judge of a new password (ASVS 2.1): length, and how easy it is to guess, by zxcvbn.

Every form and command that sets a password calls `check_new_password`. The rules: at least 12 characters
(a run of spaces counts as one), at most 128, no composition rules, and refused when zxcvbn rates it
easy to guess: common and breached passwords, words, keyboard walks, dates and repeats, and the user's own
e-mail address and name.
"""

import re
import threading

from flask_babel import gettext

from ..exceptions import InvalidInput

MIN_LENGTH = 12
MAX_LENGTH = 128
# zxcvbn's scores run 0-4; 3 means about 10^10 guesses, "safely unguessable" against online guessing and a
# slow hash offline.
MIN_SCORE = 3
# zxcvbn's l33t matching grows fast with length: 32 characters of punctuation take a quarter of a second,
# 64 over a second. Only the start is rated; a start that is hard to guess makes the whole hard to guess.
RATED_LENGTH = 32
SPACES = re.compile(r" {2,}")
# zxcvbn keeps the user's own words in a module-wide dictionary while it rates: one rating at a time.
_rating = threading.Lock()


def counted_length(password):
    """The password's length as the rules count it: a run of spaces counts as one character."""
    return len(SPACES.sub(" ", password))


def check_new_password(password, email="", name=""):
    """Raise InvalidInput saying why, unless the password is long enough and hard to guess for this user."""
    password = password or ""
    if counted_length(password) < MIN_LENGTH:
        raise InvalidInput(
            gettext(
                "The password must have at least %(MIN_LENGTH)s characters. A run of spaces counts as one.",
                MIN_LENGTH=MIN_LENGTH,
            )
        )
    if len(password) > MAX_LENGTH:
        raise InvalidInput(gettext("The password can have at most %(MAX_LENGTH)s characters.", MAX_LENGTH=MAX_LENGTH))
    own = _own_words(email, name)
    folded = password.casefold().replace(" ", "")
    if any(len(word) >= 4 and word in folded for word in own if "@" in word) or folded in own:
        raise InvalidInput(gettext("The password must not be your e-mail address or name."))
    from zxcvbn import zxcvbn  # lazy: its dictionaries take 0.1 s to load; only a new password needs them

    with _rating:
        rating = zxcvbn(password[:RATED_LENGTH], user_inputs=own, max_length=RATED_LENGTH)
    if rating["score"] < MIN_SCORE:
        raise InvalidInput(_why(rating["feedback"]))


def _own_words(email, name):
    """The user's e-mail address, its parts and their name, folded, for zxcvbn to treat as known words."""
    email = (email or "").strip().casefold()
    local, _, domain = email.partition("@")
    name = " ".join((name or "").casefold().split())
    words = {email, local, domain.split(".")[0], name, name.replace(" ", "")}
    words.update(re.split(r"[\s._+-]+", f"{local} {name}"))
    return sorted(word for word in words if word)


def _why(feedback):
    """zxcvbn's warning and first suggestion as one sentence for the form."""
    parts = [gettext("This password is too easy to guess.")]
    if feedback.get("warning"):
        parts.append(feedback["warning"])
    parts.extend(feedback.get("suggestions", [])[:1])
    return " ".join(parts)
