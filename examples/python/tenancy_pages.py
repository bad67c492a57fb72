"""Tenancy for the pages of a Python app (Streamlit or any other) on Supabase.

What the pages need, through tenancy's SQL entry points (the ``tenancy_*``
RPCs of ``migrations/20261206000400_tenancy_sql_api.sql``) and supabase-py's
PostgREST client (``pip install postgrest``):

- the organization selector: :func:`my_organizations`;
- a feature switch and its settings: :func:`feature`;
- "may I?" before showing a button: :func:`check_limit`;
- an expensive call, metered: :func:`metered` reserves before it, commits
  the actual amount after it, and releases the hold when it fails (or
  :func:`reserve`, :func:`commit` and :func:`release` one by one);
- usage recorded by a back end with the service key: :func:`record_event`;
- the usage page: :func:`usage_summary`.

A client made with a user's access token (:func:`user_client`) acts for that
user, in the organizations they belong to; viewers may check and read but
not consume. The service key (:func:`service_client`) may act for anyone:
keep it on the server. A refusal raises :class:`TenancyError` with
PostgreSQL's SQLSTATE code: ``42501`` not allowed, ``22023`` a bad argument,
``P0002`` not found.

Configuration comes from the environment (:meth:`Config.from_env`):
``SUPABASE_URL`` (or ``SUPABASE_REST_URL``, the REST base of a PostgREST
served at its root), ``SUPABASE_ANON_KEY`` and ``SUPABASE_SERVICE_ROLE_KEY``.

Run as a script, it walks through a page's calls for the user of
``TENANCY_ACCESS_TOKEN`` (whose id is ``TENANCY_USER_ID``) in the
organization ``TENANCY_ORG_ID``, and prints each result as one JSON object
per line.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from postgrest import DEFAULT_POSTGREST_CLIENT_HEADERS, APIError, SyncPostgrestClient

# ---------------------------------------------------------------------------
# Errors


class TenancyError(Exception):
    """An entry point refused the call.

    ``code`` is PostgreSQL's SQLSTATE (``"42501"``: not allowed for this
    caller; ``"22023"``: a bad argument; ``"P0002"``: not found), or
    PostgREST's own code (``PGRST…``) when the request never reached SQL.
    """

    def __init__(self, rpc: str, code: str | None, message: str, hint: str | None = None) -> None:
        super().__init__(f"{rpc}: {message} (code {code})")
        self.rpc = rpc
        self.code = code
        self.message = message
        self.hint = hint

    @property
    def permission_denied(self) -> bool:
        """Whether the caller may not do this (SQLSTATE 42501)."""
        return self.code == "42501"


class LimitExceeded(Exception):
    """The amount :func:`metered` was asked for does not fit under a hard limit.

    ``decision`` says which limit, what remains and when it resets, for a
    message such as "try again after …".
    """

    def __init__(self, decision: LimitDecision) -> None:
        super().__init__(
            f"{decision.requested} more {decision.metric} does not fit: "
            f"{decision.remaining} left until {decision.resets_at}"
        )
        self.decision = decision


# ---------------------------------------------------------------------------
# What the entry points answer. Amounts are Decimal, times aware datetimes.


def _decimal(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


@dataclass(frozen=True)
class Organization:
    """An organization: a tenant."""

    id: str
    name: str
    slug: str
    owner_user_id: str | None
    timezone: str
    created_at: datetime

    @classmethod
    def from_json(cls, row: Mapping[str, Any]) -> Organization:
        return cls(
            id=row["id"],
            name=row["name"],
            slug=row["slug"],
            owner_user_id=row["owner_user_id"],
            timezone=row["timezone"],
            created_at=datetime.fromisoformat(row["created_at"]),
        )


@dataclass(frozen=True)
class OrgMembership:
    """One entry of the organization selector.

    The organization, and the user's role in it: owner, admin, member or
    viewer.
    """

    organization: Organization
    role: str
    joined_at: datetime

    @classmethod
    def from_json(cls, row: Mapping[str, Any]) -> OrgMembership:
        return cls(
            organization=Organization.from_json(row["organization"]),
            role=row["role"],
            joined_at=datetime.fromisoformat(row["joined_at"]),
        )


@dataclass(frozen=True)
class Feature:
    """A feature of an organization; ``config`` only while it is enabled."""

    key: str
    enabled: bool
    config: Any

    @classmethod
    def from_json(cls, row: Mapping[str, Any]) -> Feature:
        return cls(key=row["key"], enabled=row["enabled"], config=row["config"])


@dataclass(frozen=True)
class DecidingLimit:
    """The limit that decided; ``user_id`` is None for an org-wide one."""

    id: str
    user_id: str | None
    period: str
    mode: str

    @classmethod
    def from_json(cls, row: Mapping[str, Any]) -> DecidingLimit:
        return cls(
            id=row["id"],
            user_id=row["scope"].get("user_id"),
            period=row["period"],
            mode=row["mode"],
        )


@dataclass(frozen=True)
class LimitDecision:
    """Whether ``requested`` more of ``metric`` fits now.

    The tightest limit decides and its figures are reported; ``limit``,
    ``remaining``, ``resets_at`` and ``decided_by`` are None when no limit
    applies. ``level`` (ok, warning, exceeded) is where usage would stand
    after the request.
    """

    allowed: bool
    metric: str
    requested: Decimal
    used: Decimal
    reserved: Decimal
    limit: Decimal | None
    remaining: Decimal | None
    resets_at: datetime | None
    level: str
    decided_by: DecidingLimit | None

    @classmethod
    def from_json(cls, row: Mapping[str, Any]) -> LimitDecision:
        decided_by = row["decided_by"]
        return cls(
            allowed=row["allowed"],
            metric=row["metric"],
            requested=Decimal(row["requested"]),
            used=Decimal(row["used"]),
            reserved=Decimal(row["reserved"]),
            limit=_decimal(row["limit"]),
            remaining=_decimal(row["remaining"]),
            resets_at=_time(row["resets_at"]),
            level=row["level"],
            decided_by=None if decided_by is None else DecidingLimit.from_json(decided_by),
        )


@dataclass(frozen=True)
class Reservation:
    """A hold on an amount until ``expires_at``.

    A denial has ``granted`` false and no id; its ``decision`` says why.
    """

    granted: bool
    reservation_id: str | None
    expires_at: datetime | None
    decision: LimitDecision

    @classmethod
    def from_json(cls, row: Mapping[str, Any]) -> Reservation:
        return cls(
            granted=row["granted"],
            reservation_id=row["reservation_id"],
            expires_at=_time(row["expires_at"]),
            decision=LimitDecision.from_json(row["decision"]),
        )


@dataclass(frozen=True)
class CommitOutcome:
    """What a commit did.

    ``recorded`` is false when this commit was recorded before (a retry);
    ``released_hold`` is false when the hold had expired or been released.
    """

    released_hold: bool
    recorded: bool


@dataclass(frozen=True)
class RecordOutcome:
    """New events, events recorded before (by id), and each event's id."""

    inserted: int
    duplicates: int
    ids: list[str]


@dataclass(frozen=True)
class UsageLine:
    """One line of the usage page.

    A metric in its current daily or monthly period, org-wide (``user_id``
    None) or the user's own, against its limit when one is set.
    """

    metric: str
    period: str
    user_id: str | None
    used: Decimal
    reserved: Decimal
    limit: Decimal | None
    mode: str | None
    remaining: Decimal | None
    percent: Decimal | None
    level: str
    resets_at: datetime

    @classmethod
    def from_json(cls, row: Mapping[str, Any]) -> UsageLine:
        return cls(
            metric=row["metric"],
            period=row["period"],
            user_id=row["scope"].get("user_id"),
            used=Decimal(row["used"]),
            reserved=Decimal(row["reserved"]),
            limit=_decimal(row["limit"]),
            mode=row["mode"],
            remaining=_decimal(row["remaining"]),
            percent=_decimal(row["percent"]),
            level=row["level"],
            resets_at=datetime.fromisoformat(row["resets_at"]),
        )


# ---------------------------------------------------------------------------
# Clients


@dataclass(frozen=True)
class Config:
    """Where the project's REST API is, and its keys."""

    rest_url: str
    anon_key: str | None = None
    service_role_key: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Config:
        """Read the configuration from environment variables.

        ``SUPABASE_REST_URL``, or ``SUPABASE_URL`` (whose REST API is at
        ``/rest/v1``); ``SUPABASE_ANON_KEY`` and ``SUPABASE_SERVICE_ROLE_KEY``.
        """
        rest_url = env.get("SUPABASE_REST_URL")
        if not rest_url:
            project = env.get("SUPABASE_URL")
            if not project:
                raise KeyError("set SUPABASE_URL (or SUPABASE_REST_URL)")
            rest_url = project.rstrip("/") + "/rest/v1"
        return cls(
            rest_url=rest_url,
            anon_key=env.get("SUPABASE_ANON_KEY") or None,
            service_role_key=env.get("SUPABASE_SERVICE_ROLE_KEY") or None,
        )


def _client(config: Config, apikey: str, token: str) -> SyncPostgrestClient:
    headers = {**DEFAULT_POSTGREST_CLIENT_HEADERS, "apikey": apikey}
    return SyncPostgrestClient(config.rest_url, headers=headers).auth(token)


def user_client(config: Config, access_token: str) -> SyncPostgrestClient:
    """Make a client that acts as the signed-in user.

    ``access_token`` is their session's JWT; it goes with the anon key.
    Row-level security applies.
    """
    if not config.anon_key:
        raise KeyError("set SUPABASE_ANON_KEY")
    return _client(config, config.anon_key, access_token)


def service_client(config: Config) -> SyncPostgrestClient:
    """Make a client with the service key, for back ends and workers only.

    It may act for any user of any organization.
    """
    if not config.service_role_key:
        raise KeyError("set SUPABASE_SERVICE_ROLE_KEY")
    return _client(config, config.service_role_key, config.service_role_key)


def _json(value: Any) -> Any:
    """Return ``value`` as JSON takes it: Decimals as strings (exact)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return {key: _json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json(item) for item in value]
    return value


def _rpc(client: SyncPostgrestClient, name: str, args: Mapping[str, Any]) -> Any:
    """Call entry point ``name`` and return its answer.

    Arguments that are None are left out, so that the SQL defaults apply.
    """
    body = {key: _json(value) for key, value in args.items() if value is not None}
    try:
        return client.rpc(name, body).execute().data
    except APIError as error:
        raise TenancyError(name, error.code, error.message or str(error), error.hint) from error


# ---------------------------------------------------------------------------
# What the pages call


def my_organizations(
    client: SyncPostgrestClient, user_id: str | None = None
) -> list[OrgMembership]:
    """Return the user's organizations with their role, the first joined first.

    The first is the default organization. ``user_id`` is for the service
    client; a user client reads its own.
    """
    rows = _rpc(client, "tenancy_user_organizations", {"user_id": user_id})
    return [OrgMembership.from_json(row) for row in rows]


def feature(client: SyncPostgrestClient, org_id: str, key: str) -> Feature:
    """Return whether feature ``key`` is on for the organization, and its config."""
    return Feature.from_json(
        _rpc(client, "tenancy_feature", {"org_id": org_id, "feature_key": key})
    )


def check_limit(
    client: SyncPostgrestClient,
    org_id: str,
    metric: str,
    amount: Decimal | int = 0,
    user_id: str | None = None,
) -> LimitDecision:
    """Decide whether ``amount`` more of ``metric`` fits now, holding nothing."""
    args = {"org_id": org_id, "metric": metric, "amount": amount, "user_id": user_id}
    return LimitDecision.from_json(_rpc(client, "tenancy_check_limit", args))


def reserve(
    client: SyncPostgrestClient,
    org_id: str,
    metric: str,
    estimate: Decimal | int,
    ttl_seconds: int = 600,
    user_id: str | None = None,
) -> Reservation:
    """Hold ``estimate`` of ``metric`` if it fits under every hard limit.

    Checked and held atomically: concurrent callers never overshoot. Needs
    the role member or higher; the service client must name ``user_id``.
    The hold lapses after ``ttl_seconds`` unless committed or released.
    """
    args = {
        "org_id": org_id,
        "metric": metric,
        "estimate": estimate,
        "ttl_seconds": ttl_seconds,
        "user_id": user_id,
    }
    return Reservation.from_json(_rpc(client, "tenancy_reserve_usage", args))


def commit(
    client: SyncPostgrestClient,
    org_id: str,
    reservation_id: str,
    actual: Decimal | int,
    user_id: str | None = None,
) -> CommitOutcome:
    """Record ``actual`` of the reserved metric and drop the hold.

    Safe to retry: the reservation's id is the recorded event's id.
    """
    args = {
        "org_id": org_id,
        "reservation_id": reservation_id,
        "actual": actual,
        "user_id": user_id,
    }
    return CommitOutcome(**_rpc(client, "tenancy_commit_usage", args))


def release(
    client: SyncPostgrestClient, org_id: str, reservation_id: str, user_id: str | None = None
) -> bool:
    """Drop the hold without recording anything; return whether there was one."""
    args = {"org_id": org_id, "reservation_id": reservation_id, "user_id": user_id}
    return bool(_rpc(client, "tenancy_release_usage", args)["released"])


@dataclass
class Hold:
    """The hold :func:`metered` took.

    Set ``actual`` to what the call used (the estimate is committed
    otherwise). After the block, ``committed`` or ``released`` says what
    became of the hold.
    """

    reservation: Reservation
    actual: Decimal | int | None = None
    committed: CommitOutcome | None = None
    released: bool | None = None


@contextmanager
def metered(
    client: SyncPostgrestClient,
    org_id: str,
    metric: str,
    estimate: Decimal | int,
    ttl_seconds: int = 600,
) -> Iterator[Hold]:
    """Reserve ``estimate`` before the block and commit ``hold.actual`` after it.

    The hold is released if the block raises. When the estimate does not
    fit, the block does not run: :class:`LimitExceeded` is raised instead::

        with metered(client, org_id, "tokens", 2000) as hold:
            answer = call_the_model(prompt)
            hold.actual = answer.usage.total_tokens
    """
    reservation = reserve(client, org_id, metric, estimate, ttl_seconds)
    if not reservation.granted or reservation.reservation_id is None:
        raise LimitExceeded(reservation.decision)
    hold = Hold(reservation)
    try:
        yield hold
    except BaseException:
        hold.released = release(client, org_id, reservation.reservation_id)
        raise
    actual = estimate if hold.actual is None else hold.actual
    hold.committed = commit(client, org_id, reservation.reservation_id, actual)


def record_event(
    client: SyncPostgrestClient,
    org_id: str,
    *,
    user_id: str | None = None,
    event_id: str | None = None,
    provider: str | None = None,
    model: str | None = None,
    operation: str | None = None,
    input_tokens: int | None = None,
    cached_input_tokens: int | None = None,
    output_tokens: int | None = None,
    quantities: Mapping[str, Decimal | int] | None = None,
    cost_usd: Decimal | None = None,
    occurred_at: datetime | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> RecordOutcome:
    """Record one usage event.

    It counts tokens (input + cached + output), ``cost_usd`` and each of
    ``quantities`` ({metric: amount}). Give ``event_id`` to make a retry
    count once; ``occurred_at`` is now when absent. With a user client the
    event is the user's own, and needs the role member or higher.
    """
    event = {
        "id": event_id,
        "organization_id": org_id,
        "user_id": user_id,
        "provider": provider,
        "model": model,
        "operation": operation,
        "input_tokens": input_tokens,
        "cached_input_tokens": cached_input_tokens,
        "output_tokens": output_tokens,
        "quantities": quantities,
        "cost_usd": cost_usd,
        "occurred_at": None if occurred_at is None else occurred_at.isoformat(),
        "metadata": metadata,
    }
    # The request body is the event itself.
    return RecordOutcome(**_rpc(client, "tenancy_record_event", event))


def usage_summary(
    client: SyncPostgrestClient, org_id: str, user_id: str | None = None
) -> list[UsageLine]:
    """Return usage in the current periods against the limits.

    Org-wide lines and the user's own, by metric, period and scope.
    """
    rows = _rpc(client, "tenancy_usage_summary", {"org_id": org_id, "user_id": user_id})
    return [UsageLine.from_json(row) for row in rows]


# ---------------------------------------------------------------------------
# The demo: a page's calls in order, one JSON object per line.


def _plain(value: Any) -> Any:
    """Return ``value`` as JSON: Decimals as strings, times in ISO 8601."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _print_step(step: str, result: Any) -> None:
    print(json.dumps({"step": step, "result": _plain(result)}), flush=True)


class _ModelFailed(Exception):
    """Stands for an expensive call that failed."""


def main() -> int:
    """Walk through a page's calls and print each result."""
    config = Config.from_env()
    org_id = os.environ["TENANCY_ORG_ID"]
    user_id = os.environ["TENANCY_USER_ID"]
    with (
        user_client(config, os.environ["TENANCY_ACCESS_TOKEN"]) as client,
        service_client(config) as service,
    ):
        _print_step("organizations", my_organizations(client))
        _print_step("feature", feature(client, org_id, "veo_avatars"))
        _print_step("check_before", check_limit(client, org_id, "ads_created", 1))

        # A model call that used less than its estimate.
        with metered(client, org_id, "tokens", 2000) as hold:
            hold.actual = 1500
        _print_step("reserved", hold.reservation)
        _print_step("committed", hold.committed)

        # One that failed: its hold is released, nothing is recorded.
        try:
            with metered(client, org_id, "tokens", 500) as failed:
                raise _ModelFailed("the model timed out")
        except _ModelFailed:
            pass
        _print_step("released", {"released": failed.released})

        # A back end records an ad with the service key, for the user.
        _print_step(
            "recorded",
            record_event(
                service,
                org_id,
                user_id=user_id,
                event_id=str(uuid.uuid4()),
                provider="openai",
                model="gpt-4o-mini",
                operation="ad_copy",
                input_tokens=300,
                output_tokens=200,
                quantities={"ads_created": 1},
                cost_usd=Decimal("0.0009"),
            ),
        )

        _print_step("summary", usage_summary(client, org_id))
        _print_step("check_after", check_limit(client, org_id, "ads_created", 1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
