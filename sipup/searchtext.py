"""How product text is folded for search: case, accents and punctuation away, so `brau` finds Hofbräu.

`folded()` is what is compared; `terms()` is what SQLite's FTS5 index holds: every suffix of every word,
each behind a marker letter, so that a prefix query on the index finds a word anywhere inside another
(`brau` inside `hofbrau`). `word_terms()` is what MariaDB/MySQL's word table `product_terms` holds (read
through B-tree indexes; it replaced InnoDB's FULLTEXT, migration 0011): the same suffixes, each with where
it starts.
"""

import re
import unicodedata

MARK = "x"
# Letters that NFKD does not take apart into a base letter and an accent.
SPELLED_OUT = str.maketrans(
    {
        "ß": "ss",
        "ẞ": "ss",
        "æ": "ae",
        "Æ": "ae",
        "ø": "o",
        "Ø": "o",
        "œ": "oe",
        "Œ": "oe",
        "đ": "d",
        "Đ": "d",
        "ł": "l",
        "Ł": "l",
        "þ": "th",
        "Þ": "th",
    }
)
NOT_A_WORD = re.compile(r"[^a-z0-9]+")
LONGEST_WORD = 40  # longer words are cut: their suffixes would fill the index for nothing
# A word of one letter (the "x" of "24 x 0.33 l") is in nearly every product: searches leave it out, and the
# word table holds no term that short.
SHORTEST_WORD = 2


def folded(text):
    """Lower case ASCII words separated by single spaces: `Weißbier, 0.5 l` gives `weissbier 0 5 l`."""
    text = unicodedata.normalize("NFKD", (text or "").translate(SPELLED_OUT))
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    return NOT_A_WORD.sub(" ", text).strip()


def words(query, limit=8):
    """The distinct folded words of a search query, longest first, at most `limit` of them."""
    seen = dict.fromkeys(folded(query).split())
    return sorted(seen, key=len, reverse=True)[:limit]


def product_text(name, sku, category, sell_unit):
    """The folded text a product is found by: name first, so a name that starts with the query ranks first."""
    return folded(" ".join((name or "", sku or "", category or "", sell_unit or "")))[:400]


def terms(text):
    """The index terms of folded text: each suffix of each word behind the marker."""
    out = []
    for word in dict.fromkeys(text.split()):
        word = word[:LONGEST_WORD]
        out.extend(MARK + word[i:] for i in range(len(word)))
    return " ".join(dict.fromkeys(out))


# Where a term of word_terms() starts: the text's first word, another word, or inside a word.
AT_TEXT_START, AT_WORD_START, INSIDE_WORD = 0, 1, 2


def word_terms(text, shortest=SHORTEST_WORD):
    """{term: where} for the word table: each suffix of at least `shortest` letters of each word of folded
    text, with the earliest place it starts (AT_TEXT_START, AT_WORD_START or INSIDE_WORD), which ranks a match."""
    found = {}
    for n, word in enumerate(text.split()):
        word = word[:LONGEST_WORD]
        for i in range(len(word) - shortest + 1):
            at = INSIDE_WORD if i else AT_WORD_START if n else AT_TEXT_START
            if found.get(word[i:], INSIDE_WORD + 1) > at:
                found[word[i:]] = at
    return found
