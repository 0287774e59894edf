"""/admin/: what needs doing."""

from flask import render_template

from ...replicas import replica_reads
from ...services import backoffice, companies
from .blueprint import bp


@bp.route("/")
@replica_reads()
def index():
    """What needs doing: orders waiting by status, credit holds, low stock, requests for an account."""
    return render_template("admin/index.html", requests=companies.pending_requests(), **backoffice.dashboard())
