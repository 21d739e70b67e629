"""The JSON Trello returns for each object, rendered from the stored records."""

from __future__ import annotations

from typing import Any

from crmsync.sandbox.trello.http import Call
from crmsync.sandbox.trello.ids import slug
from crmsync.sandbox.trello.store import Record, State, sort_by_pos

WEB = "https://trello.com"
LABEL_COLORS = ("green", "yellow", "orange", "red", "purple", "blue", "sky", "lime", "pink", "black")


def public(record: Record) -> dict[str, Any]:
    return {k: v for k, v in record.items() if not k.startswith("_")}


def trim(body: dict[str, Any], fields: str | None) -> dict[str, Any]:
    """Apply ``fields=all|a,b,c`` (``id`` is always kept)."""
    if not fields or fields == "all":
        return body
    wanted = {"id", *fields.split(",")}
    return {k: v for k, v in body.items() if k in wanted}


def member(state: State, rec: Record, *, full: bool = False) -> dict[str, Any]:
    body = {
        "id": rec["id"],
        "username": rec["username"],
        "fullName": rec["fullName"],
        "initials": rec["initials"],
        "avatarHash": None,
        "avatarUrl": None,
        "activityBlocked": False,
        "idMemberReferrer": None,
        "nonPublic": {},
        "nonPublicAvailable": True,
        "memberType": "normal",
        "confirmed": True,
        "status": "disconnected",
        "url": f"{WEB}/{rec['username']}",
        "bio": rec.get("bio", ""),
        "email": rec.get("email") if full else None,
    }
    if full:
        body["idBoards"] = [
            b["id"] for b in state.boards.values() if state.is_board_member(b["id"], rec["id"])
        ]
    return body


def member_creator(rec: Record) -> dict[str, Any]:
    return {
        "id": rec["id"],
        "activityBlocked": False,
        "avatarHash": None,
        "avatarUrl": None,
        "fullName": rec["fullName"],
        "idMemberReferrer": None,
        "initials": rec["initials"],
        "nonPublic": {},
        "nonPublicAvailable": True,
        "username": rec["username"],
    }


def label(rec: Record, state: State | None = None) -> dict[str, Any]:
    body = public(rec)
    if state is not None:
        body["uses"] = sum(1 for c in state.cards.values() if rec["id"] in c["idLabels"])
    return body


def board(state: State, rec: Record) -> dict[str, Any]:
    names = dict.fromkeys(LABEL_COLORS, "")
    for lab in state.board_labels(rec["id"]):
        if lab["color"] in names and not names[lab["color"]]:
            names[lab["color"]] = lab["name"]
    return {
        "id": rec["id"],
        "name": rec["name"],
        "desc": rec["desc"],
        "descData": None,
        "closed": rec["closed"],
        "idOrganization": rec.get("idOrganization"),
        "idEnterprise": None,
        "pinned": False,
        "starred": False,
        "subscribed": rec.get("subscribed", False),
        "url": f"{WEB}/b/{rec['shortLink']}/{slug(rec['name'])}",
        "shortUrl": f"{WEB}/b/{rec['shortLink']}",
        "shortLink": rec["shortLink"],
        "dateLastActivity": rec["dateLastActivity"],
        "idMemberCreator": rec.get("idMemberCreator"),
        "prefs": {"permissionLevel": rec.get("permissionLevel", "private"), "background": "blue"},
        "labelNames": names,
        "memberships": [dict(m, unconfirmed=False, deactivated=False) for m in rec["memberships"]],
        "limits": {},
    }


def trello_list(rec: Record) -> dict[str, Any]:
    return {
        "id": rec["id"],
        "name": rec["name"],
        "closed": rec["closed"],
        "color": None,
        "idBoard": rec["idBoard"],
        "pos": rec["pos"],
        "subscribed": rec.get("subscribed", False),
        "softLimit": None,
        "status": None,
    }


def custom_field(rec: Record) -> dict[str, Any]:
    return public(rec)


def item(rec: Record) -> dict[str, Any]:
    return public(rec)


def card_items(state: State, card_id: str) -> list[dict[str, Any]]:
    return [item(i) for i in state.items.get(card_id, {}).values()]


def card(state: State, rec: Record, *, custom_field_items: bool = False) -> dict[str, Any]:
    comments = rec.get("_comments", 0)
    labels = [label(state.labels[i]) for i in rec["idLabels"] if i in state.labels]
    body: dict[str, Any] = {
        "id": rec["id"],
        "badges": {
            "attachmentsByType": {"trello": {"board": 0, "card": 0}},
            "location": False,
            "votes": 0,
            "viewingMemberVoted": False,
            "subscribed": rec.get("subscribed", False),
            "fogbugz": "",
            "checkItems": 0,
            "checkItemsChecked": 0,
            "checkItemsEarliestDue": None,
            "comments": comments,
            "attachments": 0,
            "description": bool(rec["desc"]),
            "due": rec["due"],
            "dueComplete": rec["dueComplete"],
            "start": rec["start"],
        },
        "checkItemStates": [],
        "closed": rec["closed"],
        "dueComplete": rec["dueComplete"],
        "dateLastActivity": rec["dateLastActivity"],
        "desc": rec["desc"],
        "descData": {"emoji": {}},
        "due": rec["due"],
        "dueReminder": None,
        "email": None,
        "idBoard": rec["idBoard"],
        "idChecklists": [],
        "idList": rec["idList"],
        "idMembers": list(rec["idMembers"]),
        "idMembersVoted": [],
        "idShort": rec["idShort"],
        "idAttachmentCover": None,
        "labels": labels,
        "idLabels": list(rec["idLabels"]),
        "manualCoverAttachment": False,
        "name": rec["name"],
        "pos": rec["pos"],
        "shortLink": rec["shortLink"],
        "shortUrl": f"{WEB}/c/{rec['shortLink']}",
        "start": rec["start"],
        "subscribed": rec.get("subscribed", False),
        "url": f"{WEB}/c/{rec['shortLink']}/{rec['idShort']}-{slug(rec['name'])}",
        "cover": {
            "idAttachment": None,
            "color": None,
            "idUploadedBackground": None,
            "size": "normal",
            "brightness": "dark",
            "idPlugin": None,
        },
        "isTemplate": False,
        "cardRole": None,
    }
    if custom_field_items:
        body["customFieldItems"] = card_items(state, rec["id"])
    return body


def cards_for(call: Call, records: list[Record]) -> list[dict[str, Any]]:
    """Cards as a collection route returns them: ``fields=`` and ``customFieldItems=`` applied."""
    with_items = call.flag("customFieldItems")
    fields = call.text("fields")
    out = []
    for rec in sort_by_pos(records):
        body = card(call.state, rec, custom_field_items=with_items)
        body = trim(body, fields)
        if with_items:
            body["customFieldItems"] = card_items(call.state, rec["id"])
        out.append(body)
    return out


def webhook(rec: Record) -> dict[str, Any]:
    return {
        "id": rec["id"],
        "description": rec["description"],
        "idModel": rec["idModel"],
        "callbackURL": rec["callbackURL"],
        "active": rec["active"],
        "consecutiveFailures": rec["consecutiveFailures"],
        "firstConsecutiveFailDate": rec["firstConsecutiveFailDate"],
    }
