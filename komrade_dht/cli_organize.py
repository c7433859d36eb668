"""``komrade vote``, ``event``, ``pin`` and ``collective`` (issue 11): parsers and commands, wired into
:mod:`komrade_dht.cli` (which turns every KomradeError into one line on stderr and exit 1).

Every check that needs no network runs before the node joins; everything shown from the network goes through
:func:`komrade_dht.text.printable`; ``--json`` prints exactly one JSON document.

``KOMRADE_REGISTRATION_TRIALS`` (environment) lowers the registration work for test networks: every voter and
reader of one network must use the same value, or registrations are refused.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from .cli_posts import km, position
from .errors import KomradeError
from .social import Account
from .text import printable, truncate


def _reg_params() -> Any:
    from .social.voting import registration_params

    return registration_params()


def when(text: str) -> int:
    """A time: unix seconds, or ISO 8601 (``2026-12-01T18:00``; UTC unless it names an offset)."""
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a time is unix seconds or ISO 8601 like 2026-12-01T18:00, not {text!r}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp())


def add_parsers(sub: Any, net: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("vote", help="vote anonymously on a post you have read: up, down, or none (withdraws)")
    net(p)
    p.add_argument("post_id")
    p.add_argument("choice", choices=["up", "down", "none"])

    p = sub.add_parser("event", help="events: create, invite, answer, show, edit, cancel, list")
    esub = p.add_subparsers(dest="event_cmd", required=True)
    e = esub.add_parser("create", help="create an event (prints its id); --invite addresses at once")
    net(e)
    e.add_argument("--title", required=True)
    e.add_argument("--start", type=when, required=True, metavar="TIME")
    e.add_argument("--end", type=when, required=True, metavar="TIME")
    e.add_argument("--place", default="")
    e.add_argument("--at", type=position, metavar="LAT,LON", help="a position (coarsened before it is sent)")
    e.add_argument("--precision", type=km, default=1.0, metavar="KM", help="cell of the published position (1)")
    e.add_argument("--description", default="")
    e.add_argument("--image", type=Path, metavar="PATH")
    e.add_argument("--anonymous", action="store_true", help="host anonymously: your identity is in no envelope")
    e.add_argument("--anonymous-answers", action="store_true",
                   help="answers are anonymous (you see counts only); invite everyone with --invite, at once")
    e.add_argument("--invite", action="append", default=[], metavar="ADDRESS")
    e = esub.add_parser("invite", help="invite more people")
    net(e)
    e.add_argument("event_id")
    e.add_argument("addresses", nargs="+", metavar="ADDRESS")
    e = esub.add_parser("answer", help="answer an invitation: going, maybe or not-going")
    net(e)
    e.add_argument("event_id")
    e.add_argument("answer", choices=["going", "maybe", "not-going"])
    e = esub.add_parser("show", help="an event; the host also sees who answered what")
    net(e)
    e.add_argument("event_id")
    e.add_argument("--save-picture", type=Path, metavar="FILE", help="write the event's picture to FILE (decrypted)")
    e.add_argument("--json", action="store_true")
    e = esub.add_parser("edit", help="change an event you host (every invitee sees it)")
    net(e)
    e.add_argument("event_id")
    e.add_argument("--title")
    e.add_argument("--start", type=when, metavar="TIME")
    e.add_argument("--end", type=when, metavar="TIME")
    e.add_argument("--place")
    e.add_argument("--description")
    e = esub.add_parser("cancel", help="cancel an event you host (every invitee sees it)")
    net(e)
    e.add_argument("event_id")
    e = esub.add_parser("list", help="events you host and invitations (with --bootstrap: sync the inbox first)")
    net(e)
    e.add_argument("--json", action="store_true")

    p = sub.add_parser("pin", help="anonymous map pins: drop, list, confirm, dismiss")
    psub = p.add_subparsers(dest="pin_cmd", required=True)
    s = psub.add_parser("drop", help="drop an anonymous pin (prints its id and the published position)")
    net(s)
    s.add_argument("kind", choices=["danger", "police", "medical", "help"])
    s.add_argument("text")
    s.add_argument("--at", type=position, required=True, metavar="LAT,LON")
    s.add_argument("--radius", type=km, default=5.0, metavar="KM", help="who sees it (5)")
    s.add_argument("--precision", type=km, default=1.0, metavar="KM", help="cell of the published position (1)")
    s.add_argument("--hours", type=float, default=3.0, help="lifetime (3, at most 24)")
    s = psub.add_parser("list", help="the live pins around you, with their confirmations")
    net(s)
    s.add_argument("--at", type=position, required=True, metavar="LAT,LON")
    s.add_argument("--radius", type=km, metavar="KM", help="only pins within this distance")
    s.add_argument("--json", action="store_true")
    for name in ("confirm", "dismiss"):
        s = psub.add_parser(name, help=f"{name} a pin anonymously (list it first)")
        net(s)
        s.add_argument("pin_id")

    p = sub.add_parser("collective", help="collectives: found, join, vouch, propose, vote, show, post, posts, list")
    csub = p.add_subparsers(dest="collective_cmd", required=True)
    c = csub.add_parser("found", help="found a collective (prints its id); the key is sealed to each member")
    net(c)
    c.add_argument("name")
    c.add_argument("--member", action="append", default=[], metavar="ADDRESS", help="a founding member (repeat)")
    c.add_argument("--quorum", type=int, default=2, help="vouches a newcomer needs (2)")
    c.add_argument("--quorum-share", metavar="N/D", help="...and at least this share of the members (0/1)")
    c.add_argument("--amend-share", default="1/2", metavar="N/D", help="up-votes to amend (1/2 of the members)")
    c.add_argument("--remove-share", default="1/2", metavar="N/D", help="up-votes to remove a member (1/2)")
    c = csub.add_parser("join", help="ask a member to let you join (prints your request's id)")
    net(c)
    c.add_argument("collective_id")
    c.add_argument("member_address")
    c.add_argument("--note", default="")
    c = csub.add_parser("vouch", help="vouch for a join request (signed)")
    net(c)
    c.add_argument("collective_id")
    c.add_argument("join_id")
    c = csub.add_parser("propose", help="propose an amendment (--set FIELD=VALUE) or a removal (--remove MEMBER)")
    net(c)
    c.add_argument("collective_id")
    c.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="vouch_min=3, vouch_share=1/3, amend_share=2/3, remove_share=2/3, vote_window=SECONDS")
    c.add_argument("--remove", metavar="MEMBER", help="a member's address or key (hex prefix)")
    c = csub.add_parser("vote", help="vote anonymously on a proposal: up (yes), down (no), none (withdraw)")
    net(c)
    c.add_argument("collective_id")
    c.add_argument("proposal_id")
    c.add_argument("choice", choices=["up", "down", "none"])
    c = csub.add_parser("show", help="sync and show a collective: members, constitution, joins, proposals")
    net(c)
    c.add_argument("collective_id")
    c.add_argument("--json", action="store_true")
    c = csub.add_parser("post", help="post to the collective (members read it; signed)")
    net(c)
    c.add_argument("collective_id")
    c.add_argument("text")
    c = csub.add_parser("posts", help="the collective's posts of the last days")
    net(c)
    c.add_argument("collective_id")
    c.add_argument("--days", type=int, default=3)
    c.add_argument("--json", action="store_true")
    c = csub.add_parser("list", help="the collectives you hold a key of")
    c.add_argument("--json", action="store_true")


def _open(args: argparse.Namespace) -> Account:
    from .cli import read_passphrase

    return Account.open(args.data_dir, read_passphrase())


# -- vote ----------------------------------------------------------------------------------------------------------
def cmd_vote(args: argparse.Namespace) -> int:
    return asyncio.run(_vote(args))


async def _vote(args: argparse.Namespace) -> int:
    from .cli import client_node
    from .social import voting

    account = _open(args)
    try:
        voting.find_post(account, args.post_id)  # before joining: a post never read is refused at once
        _registration_notice(account)
        async with client_node(args) as node:
            cast = await voting.vote_on_post(account, node, args.post_id, args.choice, reg_params=_reg_params())
    finally:
        account.close()
    print(f"voted {cast.choice} on {cast.scope} (anonymous among {cast.ring_size} eligible identities)")
    return 0


def _registration_notice(account: Account) -> None:
    from . import votes

    period = votes.period_of(time.time(), _reg_params())
    if account.data.get("vote_registration", period.to_bytes(8, "big")) is None:
        print("komrade: registering this identity for world votes: a one-time proof of work (about half a minute)",
              file=sys.stderr, flush=True)


async def feed_votes(account: Account, node: Any, post_ids: list[str]) -> dict[str, dict[str, int]]:
    """``{post id: {"up": N, "down": M}}`` as this reader tallies them (what ``feed --json`` carries)."""
    from .social.organize_service import post_votes, tally_posts

    tallies = await tally_posts(account, node, post_ids, _reg_params())
    return {post_id: post_votes(t) for post_id, t in tallies.items()}


# -- events --------------------------------------------------------------------------------------------------------
def cmd_event(args: argparse.Namespace) -> int:
    return asyncio.run(_event(args))


def _print_event(e: Any) -> None:
    fmt = lambda t: time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t))  # noqa: E731
    state = ("CANCELLED  " if e.cancelled else "") + {"new": "NEW  ", "changed": "CHANGED  "}.get(e.unseen or "", "")
    host = "you" if e.hosting else ("anonymous" if e.anonymous_host else
                                    f"{truncate(e.host_name or '', 48)} [{printable(e.host_fingerprint or '')}]")
    print(f"{state}{truncate(e.title, 100)}  ({e.id})")
    print(f"    {fmt(e.starts_at)} to {fmt(e.ends_at)}" + (f", {truncate(e.place, 100)}" if e.place else ""))
    if e.position:
        print(f"    near {e.position[0]:.4f},{e.position[1]:.4f} (a cell of {e.position[2]:g} km)")
    if e.description:
        print(f"    {truncate(e.description, 400)}")
    print(f"    host: {host}" + (f"; your answer: {e.my_answer}" if e.my_answer else ""))


async def _event(args: argparse.Namespace) -> int:
    from .cli import client_node
    from .social import dm, events
    from .social.organize_service import answer_dict, counts_dict, event_dict, invitee_dict

    cmd = args.event_cmd
    image = args.image.read_bytes() if cmd == "create" and args.image is not None else None
    account = _open(args)
    try:
        if cmd == "list" and not (args.bootstrap or args.bootstrap_file):
            found = events.hosted(account) + events.invitations(account)
        elif cmd in ("show", "answer", "invite", "edit", "cancel"):
            events.show(account, args.event_id)  # unknown ids refused before joining
        if cmd == "create":
            from .address import decode_address

            for a in args.invite:
                decode_address(a)
            if args.end <= args.start:
                raise KomradeError("an event ends after it starts (--end after --start)")
            if args.at is not None:
                from . import geo

                geo.check_position(*args.at)
            await asyncio.to_thread(events.check_event, args.title, args.start, args.end, args.place,
                                    args.description, image)
        if not (cmd == "list" and not (args.bootstrap or args.bootstrap_file)):
            async with client_node(args) as node:
                if cmd == "create":
                    ev = await events.create_event(account, node, args.title, args.start, args.end, place=args.place,
                                                   at=args.at, precision_km=args.precision,
                                                   description=args.description, image=image,
                                                   anonymous=args.anonymous,
                                                   anonymous_answers=args.anonymous_answers)
                    if args.invite:
                        await events.invite(account, node, ev.id, args.invite)
                    print(ev.id)
                    if args.invite:
                        print(f"invited {len(args.invite)}")
                    return 0
                if cmd == "invite":
                    n = await events.invite(account, node, args.event_id, args.addresses)
                    print(f"invited {n}")
                    return 0
                if cmd == "answer":
                    ev = await events.refresh_event(account, node, args.event_id)
                    ev = await events.answer_event(account, node, args.event_id, args.answer.replace("-", " "))
                    print(f"answered {ev.my_answer}: {truncate(ev.title, 100)}")
                    return 0
                if cmd == "edit":
                    ev = await events.edit_event(account, node, args.event_id, title=args.title,
                                                 starts_at=args.start, ends_at=args.end, place=args.place,
                                                 description=args.description)
                    print(f"edited: version {ev.version}")
                    return 0
                if cmd == "cancel":
                    await events.cancel_event(account, node, args.event_id)
                    print("cancelled; invitees see it at their next refresh")
                    return 0
                if cmd == "list":
                    await dm.sync_inbox(account, node)
                    found = events.hosted(account) + events.invitations(account)
                else:  # show
                    ev = await events.refresh_event(account, node, args.event_id)
                    image_path = image_error = None
                    if ev.image is not None:
                        try:
                            picture = await events.fetch_image(account, node, args.event_id)
                            if picture is not None and args.save_picture is not None:
                                args.save_picture.write_bytes(picture)
                                image_path = str(args.save_picture)
                        except KomradeError as exc:
                            image_error = str(exc)
                    answers = counts = None
                    if ev.hosting and ev.anonymous_answers:
                        counts = await events.answer_counts(account, node, args.event_id)
                    elif ev.hosting:
                        answers = await events.answers(account, node, args.event_id)
                    invited = events.invitees(account, args.event_id) if ev.hosting else None
                    if not ev.hosting:
                        ev = events.mark_seen(account, args.event_id)  # shown below: no longer new or changed
        if cmd == "list":
            if args.json:
                print(json.dumps({"events": [event_dict(e) for e in found]}))
                return 0
            for e in found:
                _print_event(e)
            if not found:
                print("no events")
            return 0
    finally:
        account.close()
    if args.json:
        doc = event_dict(ev)
        if image_path:
            doc["saved"] = image_path
        if image_error:
            doc["image_error"] = image_error
        if answers is not None:
            doc["answers"] = [answer_dict(a) for a in answers]
        if counts is not None:
            doc["counts"] = counts_dict(counts)
        if invited is not None:
            doc["invitees"] = [invitee_dict(i) for i in invited]
        print(json.dumps(doc))
        return 0
    _print_event(ev)
    if image_path:
        print(f"    image: {printable(image_path)}")
    elif image_error:
        print(f"    image unavailable: {printable(image_error)}")
    elif ev.image is not None:
        print("    image: kept here, encrypted (--save-picture FILE writes it out)")
    if counts is not None:
        print("    anonymous answers: " + ", ".join(f"{n} {a}" for a, n in counts.items()))
    if answers is not None:
        print(f"    answers ({len(answers)}):" if answers else "    no answers yet")
        for a in answers:
            print(f"      {a.answer:<10} {truncate(a.name, 48)} [{printable(a.fingerprint)}]")
    if invited is not None:
        print(f"    invited ({len(invited)}):" if invited else "    nobody invited yet")
        for i in invited:
            print(f"      {(i.answer or 'no answer'):<10} {truncate(i.name or '(not a contact)', 48)} "
                  f"[{printable(i.fingerprint)}]  {printable(i.address)}")
    return 0


# -- pins ----------------------------------------------------------------------------------------------------------
def cmd_pin(args: argparse.Namespace) -> int:
    return asyncio.run(_pin(args))


async def _pin(args: argparse.Namespace) -> int:
    from . import geo
    from .cli import client_node
    from .social import pins, voting
    from .social.organize_service import pin_dict

    cmd = args.pin_cmd
    if cmd == "drop":
        if not 0 < args.hours <= 24:
            raise KomradeError(f"a pin lives from a moment to 24 hours, not {args.hours:g} hours")
        pins.check_pin(args.kind, args.text, max(1, int(args.hours * 3600)))
        geo.check_position(*args.at)
        geo.check_radius(args.radius)
    elif cmd == "list":
        geo.check_position(*args.at)
        if args.radius is not None:
            geo.check_radius(args.radius)
    account = _open(args)
    try:
        if cmd in ("confirm", "dismiss"):
            key = voting._scope_bytes(args.pin_id, "pin")
            record = account.data.get("pin", key)
            if record is None or record["expires_at"] <= time.time():
                raise KomradeError(f"no live pin {key.hex()} found: list the pins around you first (komrade pin list)")
        async with client_node(args) as node:
            if cmd == "drop":
                d = await pins.drop_pin(account, node, args.kind, args.text, args.at, radius_km=args.radius,
                                        precision_km=args.precision, ttl=max(1, int(args.hours * 3600)))
                print(d.id)
                print(f"published position: {d.area.lat:.4f},{d.area.lon:.4f} (a cell of {d.area.level_km:g} km), "
                      f"radius {d.area.radius_km:g} km, until "
                      f"{time.strftime('%H:%M UTC', time.gmtime(d.expires_at))}")
                return 0
            if cmd in ("confirm", "dismiss"):
                _registration_notice(account)
                cast = await pins.vote_on_pin(account, node, args.pin_id, cmd == "confirm", reg_params=_reg_params())
                print(f"{cmd}ed {cast.scope} (anonymous among {cast.ring_size} eligible identities)")
                return 0
            electorate = await voting.world_electorate(account, node, reg_params=_reg_params())
            found = await pins.read_pins(account, node, args.at, radius_km=args.radius, electorate=electorate)
            docs = [pin_dict(account, p) for p in found]
    finally:
        account.close()
    if args.json:
        print(json.dumps({"pins": docs}))
        return 0
    for p in found:
        left = max(0, p.expires_at - int(time.time())) // 60
        print(f"{p.kind.upper():<8} {p.distance_km:6.1f} km  +{p.confirmed} -{p.dismissed}  {left} min left  "
              f"({p.id[:12]})")
        print(f"    {truncate(p.text, 140)}")
    if not found:
        print("no pins around you")
    return 0


# -- collectives ---------------------------------------------------------------------------------------------------
def cmd_collective(args: argparse.Namespace) -> int:
    return asyncio.run(_collective(args))


def _share(text: str, what: str) -> list[int]:
    parts = text.split("/")
    try:
        if len(parts) != 2:
            raise ValueError
        return [int(parts[0]), int(parts[1])]
    except ValueError:
        raise KomradeError(f"{what} is a fraction N/D (e.g. 1/2), not {text!r}") from None


def _changes(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise KomradeError(f"--set takes FIELD=VALUE, not {item!r}")
        if name in ("vouch_min", "vote_window"):
            try:
                out[name] = int(value)
            except ValueError:
                raise KomradeError(f"{name} is a whole number, not {value!r}") from None
        elif name in ("vouch_share", "amend_share", "remove_share"):
            out[name] = _share(value, name)
        else:
            raise KomradeError(f"unknown field {name!r}: vouch_min, vouch_share, amend_share, remove_share, "
                               "vote_window")
    return out


async def _collective(args: argparse.Namespace) -> int:
    from .cli import client_node
    from .collective import Constitution
    from .social import collectives as coll
    from .social.organize_service import collective_item, state_dict

    cmd = args.collective_cmd
    account = _open(args)
    try:
        if cmd == "list":
            found = [collective_item(account, r) for r in account.data.all("collective") if r["keys"]]
            found.sort(key=lambda c: (c["name"].lower(), c["id"]))
            if args.json:
                print(json.dumps({"collectives": found}))
            for c in found:
                if not args.json:
                    print(f"{truncate(c['name'], 64)}  ({c['id']})")
            if not found and not args.json:
                print("no collectives")
            return 0
        constitution = None
        changes: dict[str, Any] = {}
        if cmd == "found":
            from .address import decode_address
            from .errors import CollectiveError

            for a in args.member:
                decode_address(a)
            try:
                constitution = Constitution(
                    vouch_min=args.quorum,
                    vouch_share=tuple(_share(args.quorum_share or "0/1", "--quorum-share")),  # type: ignore[arg-type]
                    amend_share=tuple(_share(args.amend_share, "--amend-share")),  # type: ignore[arg-type]
                    remove_share=tuple(_share(args.remove_share, "--remove-share")))  # type: ignore[arg-type]
            except CollectiveError as exc:
                raise KomradeError(f"invalid constitution: {exc}") from None
        elif cmd == "propose":
            if bool(args.set) == bool(args.remove):
                raise KomradeError("propose either --set FIELD=VALUE (an amendment) or --remove MEMBER")
            changes = _changes(args.set)
        if cmd != "found":
            coll._cid(args.collective_id)
        async with client_node(args) as node:
            if cmd == "found":
                state = await coll.found_collective(account, node, args.name, args.member,
                                                    constitution=constitution)  # type: ignore[arg-type]
                print(state.collective_id.hex())
                return 0
            if cmd == "join":
                join_id = await coll.request_join(account, node, args.collective_id, args.member_address,
                                                  note=args.note)
                print(join_id)
                return 0
            if cmd == "post":
                print(await coll.post(account, node, args.collective_id, args.text))
                return 0
            if cmd == "posts":
                got = await coll.read_posts(account, node, args.collective_id, days=max(1, args.days))
                if args.json:
                    print(json.dumps({"posts": [p.__dict__ for p in got]}))
                    return 0
                for p in got:
                    at = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(p.posted_at))
                    print(f"{at}  [{printable(p.author_fingerprint)}]  {truncate(p.author, 48)}  ({p.id[:12]})")
                    print(f"    {truncate(p.text, 1000)}")
                if not got:
                    print("no posts")
                return 0
            if cmd == "vouch":
                state = await coll.vouch(account, node, args.collective_id, args.join_id)
            elif cmd == "propose":
                if args.remove:
                    state = await coll.propose_remove(account, node, args.collective_id, args.remove)
                else:
                    state = await coll.propose_amend(account, node, args.collective_id, changes)
                newest = max(state.proposals, key=lambda h: state.order.index(h))
                print(newest.hex())
                return 0
            elif cmd == "vote":
                state = await coll.vote(account, node, args.collective_id, args.proposal_id, args.choice)
            else:
                state = await coll.sync_collective(account, node, args.collective_id)
        doc = state_dict(account, state)
    finally:
        account.close()
    if cmd == "show" and args.json:
        print(json.dumps(doc))
        return 0
    if cmd in ("vouch", "vote"):
        print(f"{'vouched' if cmd == 'vouch' else 'voted ' + args.choice}; "
              f"{len(doc['members'])} members")
        return 0
    c = doc["constitution"]
    print(f"{truncate(doc['name'], 64)}  ({doc['id']})")
    print(f"    quorum {c['vouch_min']} vouches (share {c['vouch_share'][0]}/{c['vouch_share'][1]}), amend "
          f"{c['amend_share'][0]}/{c['amend_share'][1]}, remove {c['remove_share'][0]}/{c['remove_share'][1]}; "
          f"key epoch {doc['key_epoch']}")
    print(f"    members ({len(doc['members'])}):")
    for m in doc["members"]:
        print(f"      {truncate(m['name'], 48)} [{printable(m['fingerprint'])}]")
    for j in doc["joins"]:
        if j["status"] == "pending":
            print(f"    join {j['id'][:12]} ({truncate(j['who'], 48)}): {j['vouches']}/{j['needed']} vouches")
    for p in doc["proposals"]:
        print(f"    proposal {p['id'][:12]} ({p['status']}): {truncate(p['what'], 100)}; {p['up']} up of {p['needed']} needed, "
              f"{p['down']} down")
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "vote": cmd_vote,
    "event": cmd_event,
    "pin": cmd_pin,
    "collective": cmd_collective,
}
