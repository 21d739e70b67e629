"""Alerts through apprise URLs (Telegram, Slack, e-mail, webhooks, ...): one alert per problem,
a reminder while it lasts, one notice when it clears. See :mod:`crmsync.alerts.alerter`."""

from crmsync.alerts.alerter import Alerter, Notify
from crmsync.alerts.checks import (
    auth_failure,
    auth_ok,
    check_dead_letters,
    check_queue_lag,
    dead_letter_alert,
    dead_letters_cleared,
    webhook_ok,
    webhook_problem,
)
from crmsync.alerts.state import Problem
from crmsync.redact import redact_url

__all__ = [
    "Alerter",
    "Notify",
    "Problem",
    "auth_failure",
    "auth_ok",
    "check_dead_letters",
    "check_queue_lag",
    "dead_letter_alert",
    "dead_letters_cleared",
    "redact_url",
    "webhook_ok",
    "webhook_problem",
]
