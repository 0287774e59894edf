"""Domain errors, at the bottom of the layers: every layer raises them, each with a message fit to show the
user as it is, in the reader's language (Flask-Babel's gettext). (The HTTP error pages are sipup/errors.py.)"""

from flask_babel import gettext


class DomainError(Exception):
    """A rule of the business was not met; str(error) explains it to the user."""


class NotFound(DomainError):
    pass


class NotAllowed(DomainError):
    """The user may see this but not change it."""


class InvalidQuantity(DomainError):
    pass


class OutOfStock(DomainError):
    """Stock cannot cover a line; product_id names the line when it comes from a cart."""

    def __init__(self, message, product_id=None):
        super().__init__(message)
        self.product_id = product_id


class AlreadyPlaced(DomainError):
    """The checkout form was sent before and placed this order; nothing new is placed."""

    def __init__(self, number):
        super().__init__(
            gettext("Order %(number)s was already placed from this checkout; nothing was ordered twice.", number=number)
        )
        self.number = number


class EmptyCart(DomainError):
    pass


class InvalidTransition(DomainError):
    pass


class InvalidInput(DomainError):
    pass


class FieldErrors(InvalidInput):
    """Several form fields are wrong: errors maps each field name to its message."""

    def __init__(self, errors):
        self.errors = errors
        super().__init__(" ".join(errors.values()))


class LineRefused(InvalidInput):
    """A line of an imported file cannot be applied: problems lists (column, why) for each wrong cell."""

    def __init__(self, problems):
        self.problems = problems
        super().__init__("; ".join(f"{column}: {why}" for column, why in problems))
