"""What the webhook receiver keeps in the store, shared by every process serving it.

- **receivers**: per connection, the unguessable secret of its callback URL (made on first use),
  the URL ``crmsync webhooks ensure`` last registered, and the deliveries refused (count, last
  time and reason: shown by ``crmsync status``);
- **used tokens**: a signed delivery's token, bound to the digest of the body it came with, kept
  until the token expires: a token seen again with another body is a replay and is refused;
- **field times**: the vendor's change time of the newest value received per item and field, so
  that a delivery older than one already received is dropped, whatever order they arrive in.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from crmsync.store.db import StoreOrConnection, connection
from crmsync.store.schema import utcnow, webhook_field_times, webhook_receivers, webhook_tokens

#: bytes of randomness in a callback URL's secret (256 bits, URL-safe text of 43 characters)
SECRET_BYTES = 32


@dataclass(frozen=True)
class Receiver:
    connection: str
    url_secret: str
    callback_url: str | None
    refused: int
    refused_at: datetime | None
    refused_reason: str | None


def _row(r: sa.Row[Any]) -> Receiver:
    m = r._mapping
    return Receiver(
        connection=str(m["connection"]),
        url_secret=str(m["url_secret"]),
        callback_url=m["callback_url"],
        refused=int(m["refused"]),
        refused_at=m["refused_at"],
        refused_reason=m["refused_reason"],
    )


def receiver(db: StoreOrConnection, name: str) -> Receiver:
    """The receiver of connection ``name``, made (with a new secret) if it has none yet."""
    c = webhook_receivers.c
    with connection(db) as conn:
        found = conn.execute(sa.select(webhook_receivers).where(c.connection == name)).first()
        if found is not None:
            return _row(found)
        try:
            with conn.begin_nested():
                conn.execute(
                    sa.insert(webhook_receivers).values(
                        connection=name,
                        url_secret=secrets.token_urlsafe(SECRET_BYTES),
                        created_at=utcnow(),
                        refused=0,
                    )
                )
        except IntegrityError:
            pass  # made meanwhile by another process: use theirs
        return _row(conn.execute(sa.select(webhook_receivers).where(c.connection == name)).one())


def set_callback_url(db: StoreOrConnection, name: str, url: str) -> None:
    """Remember the URL registered with the vendor (the audience signed deliveries must name)."""
    receiver(db, name)
    with connection(db) as conn:
        conn.execute(
            sa.update(webhook_receivers)
            .where(webhook_receivers.c.connection == name)
            .values(callback_url=url[:500])
        )


def record_refusal(db: StoreOrConnection, name: str, reason: str) -> int:
    """Count one refused delivery; returns the connection's count of refusals so far."""
    receiver(db, name)
    c = webhook_receivers.c
    with connection(db) as conn:
        conn.execute(
            sa.update(webhook_receivers)
            .where(c.connection == name)
            .values(refused=c.refused + 1, refused_at=utcnow(), refused_reason=reason[:2000])
        )
        return int(conn.execute(sa.select(c.refused).where(c.connection == name)).scalar_one())


def receivers(db: StoreOrConnection) -> list[Receiver]:
    """Every connection's receiver, by name."""
    query = sa.select(webhook_receivers).order_by(webhook_receivers.c.connection)
    with connection(db, write=False) as conn:
        return [_row(r) for r in conn.execute(query)]


def use_token(db: StoreOrConnection, token_digest: str, body_digest: str, expires_at: datetime) -> bool:
    """Bind a signed token to the body it came with; False when it already came with another body.

    The same token with the same body is the same delivery (resent): accepted again. Tokens past
    their expiry are pruned on the way (they can no longer be verified anyway).
    """
    c = webhook_tokens.c
    with connection(db) as conn:
        conn.execute(sa.delete(webhook_tokens).where(c.expires_at < utcnow()))
        try:
            with conn.begin_nested():
                conn.execute(
                    sa.insert(webhook_tokens).values(
                        token_digest=token_digest, body_digest=body_digest, expires_at=expires_at
                    )
                )
            return True
        except IntegrityError:
            held = conn.execute(sa.select(c.body_digest).where(c.token_digest == token_digest)).scalar()
            return held is None or held == body_digest


def newer_fields(db: StoreOrConnection, name: str, item_id: str, times: Mapping[str, datetime]) -> set[str]:
    """Record the change time of each field of ``times`` unless an older one is given; returns the
    fields not stale. A field whose held time is later is stale: not returned. The same time is
    not stale: a delivery resent (its copy is then de-duplicated by the queue).

    Each field is one row, moved forward only, so two processes receiving two deliveries of one
    field at once agree on which is the newer.
    """
    c = webhook_field_times.c
    newer: set[str] = set()
    with connection(db) as conn:
        for field, at in times.items():
            key = (c.connection == name, c.item_id == item_id, c.field == field[:200])
            forward = sa.update(webhook_field_times).where(*key, c.changed_at <= at).values(changed_at=at)
            if conn.execute(forward).rowcount:
                newer.add(field)
                continue
            if conn.execute(sa.select(c.changed_at).where(*key)).first() is not None:
                continue  # held a later time: stale
            try:
                with conn.begin_nested():
                    conn.execute(
                        sa.insert(webhook_field_times).values(
                            connection=name, item_id=item_id, field=field[:200], changed_at=at
                        )
                    )
                newer.add(field)
            except IntegrityError:  # inserted meanwhile: compare with that one
                if conn.execute(forward).rowcount:
                    newer.add(field)
    return newer


def forget_item(db: StoreOrConnection, name: str, item_id: str) -> None:
    """Drop the field times of a deleted item."""
    c = webhook_field_times.c
    with connection(db) as conn:
        conn.execute(sa.delete(webhook_field_times).where(c.connection == name, c.item_id == item_id))
