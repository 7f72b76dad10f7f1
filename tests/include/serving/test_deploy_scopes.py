"""Control-API tokens with scopes (``serving.deploy``): who may move which alias, and who the audit
row names. The live path (a shadow-only token refused a promotion, its row naming it) is in
test_service.py."""

from __future__ import annotations

import json

import pytest

from fraudops.exceptions import ConfigError
from fraudops.serving.deploy import SCOPES, AuthError, authenticate, authorize, parse_grants

OPERATOR = "operator-token-0123456789"
SCOPED = json.dumps(
    {
        "ci-bot": {"token": "ci-bot-token-0123456789", "scopes": ["shadow"]},
        "oncall": {"token": "oncall-token-0123456789", "scopes": ["rollback", "production"]},
    }
)


def test_each_token_gets_its_scopes_and_names_its_actor() -> None:
    grants = parse_grants(OPERATOR, SCOPED)
    operator = authenticate(f"Bearer {OPERATOR}", grants)
    assert operator.operator and operator.scopes == frozenset(SCOPES)
    # The operator's token (the console, fraudops deploy) may say whom it acts for; others may not.
    assert operator.who("console:rita") == "console:rita" and operator.who(None) == "control-api"
    bot = authenticate("Bearer ci-bot-token-0123456789", grants)
    assert bot.who("rita") == "token:ci-bot"
    authorize(bot, "shadow")
    for mode in ("production", "rollback"):
        with pytest.raises(AuthError, match=f"'ci-bot' may not deploy in {mode} mode") as err:
            authorize(bot, mode)
        assert err.value.status == 403
    assert authenticate(f"bearer {OPERATOR}", grants) is operator  # the scheme is case-insensitive
    oncall = authenticate("Bearer  oncall-token-0123456789 ", grants)
    authorize(oncall, "rollback")
    with pytest.raises(AuthError, match="scopes: production, rollback"):
        authorize(oncall, "shadow")
    assert "token" not in repr(bot).replace("token:", "")  # the secret stays out of logs


@pytest.mark.parametrize(
    ("header", "status"),
    [
        (None, 401),
        ("", 401),
        ("Basic abc", 401),
        ("Bearer ", 401),
        ("Bearer nope", 403),
    ],
)
def test_missing_and_unknown_tokens(header: str | None, status: int) -> None:
    with pytest.raises(AuthError) as err:
        authenticate(header, parse_grants(OPERATOR, SCOPED))
    assert err.value.status == status


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("{not json", "not JSON"),
        ('["ci-bot"]', "must be"),
        ('{"ci-bot": {"token": "short", "scopes": ["shadow"]}}', "16 characters"),
        ('{"ci-bot": {"token": "ci-bot-token-0123456789", "scopes": []}}', "non-empty list"),
        ('{"ci-bot": {"token": "ci-bot-token-0123456789", "scopes": ["admin"]}}', "non-empty list"),
        ('{"ci-bot": {"token": "ci-bot-token-0123456789"}}', "needs scopes"),
        (json.dumps({"a": {"token": OPERATOR, "scopes": ["shadow"]}}), "share a token"),
    ],
)
def test_a_malformed_token_setting_is_refused_by_name(raw: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_grants(OPERATOR, raw)


def test_no_token_no_control_api() -> None:
    assert parse_grants(None, "") == () and parse_grants("", "  ") == ()
    assert [g.actor for g in parse_grants(None, SCOPED)] == ["ci-bot", "oncall"]
