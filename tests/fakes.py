"""XPay in memory, for unit tests of the link service (``Gateway`` in bot/links/service.py).

The real client against the sandbox or a stub server is tested in the integration layer; here
the service's own decisions are, without HTTP: what it records for each answer XPay gives.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from bot.xpay.client import CheckoutCreated, IntentDetails, XPayError, XPayRejected


@dataclass
class FakeIntent:
    """A payment intent the fake created: the create payload and its status now."""

    payload: dict[str, Any]
    status: str = "requires_payment_method"
    reports_sum: bool = True  # False: get_intent leaves the amount and currency out


class FakeGateway:
    """Creates intents ``xpay_pi_1``, ``xpay_pi_2`` …; ``fail_next`` scripts failures, ``pay``
    changes what ``get_intent`` reports. ``creates`` holds every create payload received."""

    def __init__(self) -> None:
        self.creates: list[dict[str, Any]] = []
        self.intents: dict[str, FakeIntent] = {}
        self._failures: deque[XPayError] = deque()
        self._lock = threading.Lock()

    def fail_next(self, *errors: XPayError) -> None:
        """The next creates raise ``errors``, one each in order; later ones succeed again."""
        with self._lock:
            self._failures.extend(errors)

    def create_checkout(self, payload: dict[str, Any]) -> CheckoutCreated:
        with self._lock:
            self.creates.append(payload)
            if self._failures:
                raise self._failures.popleft()
            intent_id = f"xpay_pi_{len(self.intents) + 1}"
            self.intents[intent_id] = FakeIntent(payload)
        return CheckoutCreated(
            intent_id=intent_id,
            checkout_url=f"https://checkout.example.test/{intent_id}",
            status="requires_payment_method",
            raw={},
        )

    def get_intent(self, intent_id: str) -> IntentDetails:
        with self._lock:
            intent = self.intents.get(intent_id)
        if intent is None:
            raise XPayRejected("No such payment intent", 404)
        return IntentDetails(
            intent_id=intent_id,
            status=intent.status,
            amount=Decimal(intent.payload["amount"]) if intent.reports_sum else None,
            currency=intent.payload["currency"] if intent.reports_sum else None,
            raw={},
        )

    def pay(self, intent_id: str, status: str = "succeeded", *, reports_sum: bool = True) -> None:
        """The customer pays (or the payment fails) at XPay, whose webhook never arrives;
        ``reports_sum=False``: XPay's record of it then states no amount or currency."""
        with self._lock:
            self.intents[intent_id].status = status
            self.intents[intent_id].reports_sum = reports_sum
