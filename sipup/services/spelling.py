"""Search that forgives typos: the catalog's own words, and the closest of them to a word that finds nothing.

The vocabulary is every word of the names of active products and of the categories, folded as the search
index folds them (`searchtext.folded`), each with how often it occurs and the form it is usually written in
(`hofbrau` -> `Hofbräu`). It is built once for the whole site and kept in the shared cache, fresh after every
change of those words (its own cache generation, renewed after commit in every process and host); each process
keeps its matcher for the vocabulary's version.
"""

import re
import secrets
import threading
from collections import Counter, defaultdict
from itertools import chain

from rapidfuzz import fuzz, process
from sqlalchemy import event, inspect, select
from sqlalchemy.orm import Session

from sipup.cache import cached, touch

from .. import searchtext
from ..extensions import db
from ..models import Category, Product

WORD = re.compile(r"\w+")
SHORTEST = 3  # shorter words are too many and too alike to guess from
GENERATION = "catalog-words"  # the cache generation of the vocabulary (below: what renews it)
CANDIDATES = 5  # the closest words weighed by how often they occur
MOST_WORDS = 8  # as many as the search itself reads (searchtext.words); a longer query is not guessed at
_LOCK = threading.Lock()
_MATCHERS = {}  # vocabulary version -> Vocabulary; one kept per process


def _cutoff(word):
    """How alike (rapidfuzz ratio, 0-100) a catalog word must be: one letter wrong in four (`pilz`, `pils`),
    a little less alike in longer words (`hofbreu`, `hofbrau`)."""
    return 75 if len(word) <= 5 else 70


class Vocabulary:
    """The catalog's folded words, how often each occurs and its usual written form; plain data only."""

    def __init__(self, counts, forms):
        self.words = sorted(counts, key=lambda w: (-counts[w], w))
        self.counts, self.forms = counts, forms
        self.joined = "\n" + "\n".join(self.words) + "\n"  # one C substring search tells if a word is found

    def finds(self, word):
        """Whether the word is inside a catalog word, as the search index finds it (any part of a word)."""
        return word in self.joined

    def closest(self, word):
        """The catalog word most like this one (folded), or None when none is alike enough."""
        if len(word) < SHORTEST or word.isdigit():
            return None
        found = process.extract(word, self.words, scorer=fuzz.ratio, score_cutoff=_cutoff(word), limit=CANDIDATES)
        if not found:
            return None
        best = max(found, key=lambda hit: (round(hit[1] / 5), self.counts[hit[0]]))  # near ties: the common one
        return best[0]


def _load():
    """{folded word: count} and {folded word: usual form} over active products' names and the categories."""
    counts, written = Counter(), defaultdict(Counter)
    folds = {}
    # Distinct names, read from the index on (active, name) alone; a word's count is how many names hold it.
    names = db.session.scalars(select(Product.name).where(Product.active.is_(True)).distinct()).all()
    for text in chain(names, db.session.scalars(select(Category.name)).all()):
        for raw in WORD.findall(text or ""):
            word = folds.get(raw)
            if word is None:
                word = folds[raw] = searchtext.folded(raw).replace(" ", "")
            if len(word) >= SHORTEST and not word.isdigit():
                counts[word] += 1
                written[word][raw] += 1
    forms = {word: spellings.most_common(1)[0][0] for word, spellings in written.items()}
    return {"counts": dict(counts), "forms": forms}


def vocabulary():
    """The catalog's vocabulary as of its last change: read from the shared cache once per version and
    process, built from the database once for the site."""
    version = cached("products", "vocabulary-version", (), [GENERATION], lambda: secrets.token_hex(8))
    matcher = _MATCHERS.get(version)
    if matcher is None:
        data = cached("products", "vocabulary", (version,), [GENERATION], _load)
        matcher = Vocabulary(data["counts"], data["forms"])
        with _LOCK:
            _MATCHERS.clear()
            _MATCHERS[version] = matcher
    return matcher


def corrected(query):
    """The query with each word that finds nothing in the catalog replaced by the closest catalog word, in its
    usual written form (`hofbreu pils` -> `Hofbräu pils`); None when no word needed or found a correction."""
    words = (query or "").split()
    if not words or len(words) > MOST_WORDS:
        return None
    known = vocabulary()
    out, changed = [], False
    for raw in words:
        word = searchtext.folded(raw).replace(" ", "")
        if len(word) < SHORTEST or word.isdigit() or known.finds(word):
            out.append(raw)
            continue
        closest = known.closest(word)
        if closest is None:
            out.append(raw)
            continue
        out.append(known.forms.get(closest, closest))
        changed = True
    return " ".join(out) if changed else None


# --- what renews the vocabulary --------------------------------------------------------------------
# Not every catalog change ("catalog" renews on product edits, "stock" on each order and stock file): only
# products added, removed, renamed, (de)activated or moved, and categories. Results never depend on the vocabulary (the
# corrected query runs against the index like any other), only which guess is offered does.

WORD_COLUMNS = ("name", "active", "category_id")
SET_WORDS = re.compile(r"\bSET\b.*\b(name|active|category_id)\s*=", re.IGNORECASE | re.DOTALL)


def _changes_words(obj, session):
    if isinstance(obj, Category):
        return True
    if not isinstance(obj, Product):
        return False
    if obj in session.new or obj in session.deleted:
        return True
    state = inspect(obj)
    return any(state.attrs[column].history.has_changes() for column in WORD_COLUMNS)


@event.listens_for(Session, "after_flush")
def _note_changed_words(session, _context):
    if any(_changes_words(obj, session) for obj in chain(session.new, session.dirty, session.deleted)):
        touch(GENERATION)


@event.listens_for(Session, "do_orm_execute")
def _note_statement(state):
    if not (state.is_insert or state.is_update or state.is_delete):
        return
    table = getattr(getattr(state.statement, "table", None), "name", None)
    if table not in ("products", "categories"):
        return
    declared = state.execution_options.get("cache_touches")
    if declared is not None:
        changes = "catalog" in declared
    elif state.is_update and table == "products":
        changes = bool(SET_WORDS.search(str(state.statement).split(" WHERE ", 1)[0]))  # not a stock update
    else:
        changes = True
    if changes:
        touch(GENERATION)
