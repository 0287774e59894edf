"""VAT as the law has it: the rate of each product's VAT class in the country of delivery (SIPUP_VAT_RATES),
the deposit's own rate, reverse charge for EU businesses abroad, and the summary per rate that carts,
orders, invoices and credit notes show.

    rules = vat.rules()                                   # from the settings
    rules.rate("reduced", "DE")                           # Decimal("0.07")
    vat.summary([(Decimal("0.19"), Decimal("100.00"))])   # [VatRow(rate=0.19, base=100.00, vat=19.00)]
"""

from dataclasses import dataclass
from decimal import Decimal

from flask import current_app
from flask_babel import lazy_gettext
from stdnum.eu import vat as eu_vat

from .. import i18n
from .pricing import money

CLASS_LABELS = {
    "standard": lazy_gettext("Standard rate"),
    "reduced": lazy_gettext("Reduced rate"),
    "zero": lazy_gettext("Zero rate"),
}
# Member states of the EU by the two letters a VAT id starts with (Greece's VAT ids start with EL).
EU = frozenset("AT BE BG CY CZ DE DK EE ES FI FR GR HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK".split())


@dataclass(frozen=True)
class VatRules:
    """Rates per country and class, what the deposit follows, the shop's country and whether reverse charge is on."""

    rates: dict  # {"DE": {"standard": Decimal("0.19"), ...}}
    fallback: Decimal  # every class in a country not listed (SIPUP_VAT_RATE)
    deposit: str = "product"  # "product": the rate of what it holds; else a class
    home: str = ""
    reverse_charge: bool = False

    @classmethod
    def flat(cls, rate):
        """One rate on every class in every country: what a single SIPUP_VAT_RATE meant."""
        return cls({}, Decimal(str(rate)))

    def rate(self, vat_class, country):
        """The rate of a VAT class in the country of delivery; a country not listed pays the fallback."""
        table = self.rates.get((country or self.home).upper())
        if table is None:
            return self.fallback
        return table.get(vat_class or "standard", table["standard"])

    def deposit_rate(self, vat_class, country):
        """The rate on a product's deposit: the product's own, or the configured class's."""
        return self.rate(vat_class if self.deposit == "product" else self.deposit, country)

    def reverse_charged(self, country, vat_id):
        """True for an EU business in another country than the shop's with a VAT id of that country, when on."""
        country = (country or "").upper()
        if not self.reverse_charge or not self.home or country == self.home or country not in EU:
            return False
        return vat_id_country(vat_id) == country


def vat_id_country(vat_id):
    """The EU country of a VAT id whose form and check digits are right ("EL" is Greece), else None. This is
    python-stdnum's offline check; whether the id is registered is VIES's to say."""
    if not vat_id or not eu_vat.is_valid(vat_id):
        return None
    prefix = eu_vat.compact(vat_id)[:2]
    return "GR" if prefix == "EL" else prefix


def rules():
    """The VAT rules of the settings."""
    config = current_app.config
    return VatRules(
        config["VAT_RATES"],
        config["VAT_RATE"],
        config["VAT_DEPOSIT"],
        config["VAT_COUNTRY"],
        config["VAT_REVERSE_CHARGE"],
    )


def as_rules(vat):
    """VatRules as given, or a single rate (Decimal or text) as flat rules."""
    return vat if isinstance(vat, VatRules) else VatRules.flat(vat)


@dataclass(frozen=True)
class VatRow:
    """One line of the summary per rate: the rate (None: not recorded, an order placed before rates per line),
    the net amount it applies to, and the VAT."""

    rate: Decimal | None
    base: Decimal
    vat: Decimal

    @property
    def percent(self):
        """The rate as people write it (see percent())."""
        return percent(self.rate)


def percent(rate):
    """A rate as people write it: "19 %", "7 %", "0 %", "5.5 %" ("5,5 %" in German); "" when not recorded."""
    return i18n.percent(rate)


def summary(parts):
    """[(rate, net amount)] summed per rate, highest rate first, the VAT of each rounded once per rate."""
    bases = {}
    for rate, amount in parts:
        bases[rate] = bases.get(rate, Decimal("0.00")) + amount
    return [VatRow(rate, base, money(base * rate)) for rate, base in sorted(bases.items(), reverse=True)]


def line_parts(lines):
    """[(rate, net)] of priced or copied lines: each line's goods at its rate and its deposit at the deposit's."""
    parts = []
    for line in lines:
        parts.append((line.vat_rate, line.line_total))
        deposit = money(line.unit_deposit * line.quantity)
        if deposit:
            parts.append((line.deposit_vat_rate, deposit))
    return parts


def order_summary(order):
    """An order's VAT per rate from its lines; an order placed before rates per line shows its one VAT total."""
    if any(line.vat_rate is None for line in order.lines):
        return [VatRow(None, order.goods_total + order.deposit_total, order.vat_total)]
    return summary(line_parts(order.lines))
