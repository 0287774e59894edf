"""What cached reads hold: plain data, never ORM objects (a row as a Plain dict, a page as PageOf)."""


class Plain(dict):
    """A dict whose keys also read as attributes, so templates and price rules use it like a model."""

    __slots__ = ()

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class PageOf:
    """One page of plain rows with what the pager macro reads; a picklable stand-in for Pagination."""

    def __init__(self, items, total, page, per_page):
        self.items, self.total, self.page, self.per_page = items, total, page, per_page

    @property
    def pages(self):
        return max(1, -(-self.total // self.per_page)) if self.total else 0

    @property
    def has_prev(self):
        return self.page > 1

    @property
    def has_next(self):
        return self.page < self.pages

    @property
    def prev_num(self):
        return self.page - 1 if self.has_prev else None

    @property
    def next_num(self):
        return self.page + 1 if self.has_next else None

    def converted(self, convert):
        """The same page with each item converted (ORM rows to plain ones, for the cache)."""
        return PageOf([convert(item) for item in self.items], self.total, self.page, self.per_page)

    @classmethod
    def of(cls, pagination, convert):
        return cls(
            [convert(item) for item in pagination.items], pagination.total or 0, pagination.page, pagination.per_page
        )
