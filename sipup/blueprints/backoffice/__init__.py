"""The staff's back office on /admin/... (endpoints admin.*), a module per area: dashboard, orders (with their
invoices and credit notes), products, companies, staff, price_lists, account_requests, reports, imports (and
exports). blueprint.py holds the blueprint, its guard (staff and admins only) and the helpers the areas share;
importing an area attaches its routes."""

from . import (  # noqa: F401  (each area attaches its routes to bp)
    account_requests,
    companies,
    dashboard,
    imports,
    orders,
    price_lists,
    products,
    reports,
    staff,
)
from .blueprint import bp

__all__ = ["bp"]
