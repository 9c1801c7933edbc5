"""The approval policy by amount: which requests the policy approves itself, which need one
approver and which two (``PAYLINK_AUTO_APPROVE_UNDER``, ``PAYLINK_SECOND_APPROVAL_FROM``).

A request's rule is decided when it is made and kept with it (``approvals_needed`` and
``policy_threshold`` on the link), so the card, its history and its approvals keep telling
the same story when the settings change later.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from bot.config import Settings
from bot.money import money_text

#: The actor of the policy's own decisions in a link's history.
POLICY_ACTOR = "policy"

AUTO, ONE, TWO = 0, 1, 2  # approvals a request needs: none (the policy approves), one, two


@dataclass(frozen=True)
class Rule:
    """What a request of ``amount`` in ``currency`` needs: ``approvals`` (AUTO, ONE or
    TWO) and the ``threshold`` that decided it (None for ONE)."""

    approvals: int
    currency: str
    threshold: Decimal | None = None

    @property
    def note(self) -> str:
        """The threshold as people read it: ``under PKR 10,000``, ``PKR 100,000 or more``."""
        return threshold_note(self.approvals, self.threshold, self.currency)


def threshold_note(approvals: int, threshold: Decimal | None, currency: str) -> str:
    """``under PKR 10,000`` (AUTO) or ``PKR 100,000 or more`` (TWO); "" otherwise."""
    if threshold is None:
        return ""
    amount = money_text(threshold, currency)
    if approvals == AUTO:
        return f"under {amount}"
    return f"{amount} or more" if approvals == TWO else ""


@dataclass(frozen=True)
class ApprovalPolicy:
    """Per-currency thresholds; a currency not listed has none (one approver)."""

    auto_under: Mapping[str, Decimal] = field(default_factory=dict)
    second_from: Mapping[str, Decimal] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> ApprovalPolicy:
        """The policy the settings describe."""
        return cls(
            dict(settings.paylink_auto_approve_under), dict(settings.paylink_second_approval_from)
        )

    def rule(self, amount: Decimal, currency: str) -> Rule:
        """The rule for ``amount`` in ``currency``. Boundaries are exact (Decimal): strictly
        below the auto-approval threshold, at or above the second-approval one. Should the
        two overlap, two approvers win: the policy never approves what needs two."""
        second = self.second_from.get(currency)
        if second is not None and amount >= second:
            return Rule(TWO, currency, second)
        auto = self.auto_under.get(currency)
        if auto is not None and amount < auto:
            return Rule(AUTO, currency, auto)
        return Rule(ONE, currency)

    def summary(self, currencies: Iterable[str]) -> str:
        """One line for the request form: each offered currency's thresholds, "" when
        none apply (``PKR: under PKR 10,000 approved automatically; PKR 100,000 or more
        needs two approvers``)."""
        parts = []
        for currency in currencies:
            rules = []
            if currency in self.auto_under:
                rule = Rule(AUTO, currency, self.auto_under[currency])
                rules.append(f"{rule.note} approved automatically")
            if currency in self.second_from:
                rule = Rule(TWO, currency, self.second_from[currency])
                rules.append(f"{rule.note} needs two approvers, neither of them you")
            if rules:
                parts.append(f"{currency}: " + "; ".join(rules))
        return " · ".join(parts)
