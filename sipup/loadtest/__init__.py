"""`flask loadtest`: a load generator whose numbers can be trusted (see runner.py for the two models).

Developers write their own scenarios against this package's Scenario class and task decorator.
"""

from .scenarios import Scenario, ScenarioError, task

__all__ = ["Scenario", "ScenarioError", "task"]
