"""``komrade post``, ``feed``, ``friend`` and ``profile`` (issue 10): the parsers and commands, wired into
:mod:`komrade_dht.cli` (which turns every KomradeError into one line on stderr and exit 1).

Everything shown to a person that came from the network (names, texts, bios) goes through
:func:`komrade_dht.text.printable` / ``printable_block``; ``--json`` output is exact.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from .errors import KomradeError
from .social import Account
from .text import printable, printable_block, truncate


def position(text: str) -> tuple[float, float]:
    """``LAT,LON`` in decimal degrees (range checked later, with the geo module's words)."""
    parts = text.split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        return float(parts[0]), float(parts[1])
    except ValueError:
        raise argparse.ArgumentTypeError(f"a position is LAT,LON in decimal degrees (e.g. 52.52,13.40), not {text!r}")


def km(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a radius is a number of kilometres, not {text!r}") from None


def add_parsers(sub: Any, net: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("post", help="post to the world, your friends or the local area (prints the post's id)")
    net(p)
    p.add_argument("--anonymous", action="store_true", help="no key, no name, nothing linking it to you or your other "
                   "anonymous posts (world and local only)")
    p.add_argument("--to", choices=["world", "friends", "local"], default="world")
    p.add_argument("--at", type=position, metavar="LAT,LON", help="local posts: where (coarsened before it is sent)")
    p.add_argument("--radius", type=km, metavar="KM", help="local posts: who sees it (e.g. 1 to 50 km)")
    p.add_argument("--precision", type=km, default=2.0, metavar="KM",
                   help="local posts: the published position is the centre of a cell this big (1, 2, 5, 10, 20, 50; "
                        "rounded up; default 2)")
    p.add_argument("--image", type=Path, metavar="PATH", help="one picture (re-encoded here, every metadata removed)")
    p.add_argument("--ttl-days", type=float, default=14.0, metavar="DAYS", help="lifetime (14, at most 30)")
    p.add_argument("text")

    p = sub.add_parser("feed", help="read a feed: world (default), friends or local, newest first")
    net(p)
    p.add_argument("which", nargs="?", choices=["world", "friends", "local"], default="world")
    p.add_argument("--at", type=position, metavar="LAT,LON", help="local: your position")
    p.add_argument("--radius", type=km, metavar="KM", help="local: only posts written within this distance")
    p.add_argument("--limit", type=int, default=50, help="posts to show (50)")
    p.add_argument("--save-pictures", type=Path, metavar="DIR", help="write the shown posts' pictures to DIR as "
                   "<post id>.jpg (decrypted: they are kept encrypted otherwise)")
    p.add_argument("--json", action="store_true", help="print exactly one JSON document")

    p = sub.add_parser("friend", help="share your circle (friends posts and profile) with someone, or stop")
    fsub = p.add_subparsers(dest="friend_cmd", required=True)
    for name, text in (("add", "add a friend (and a contact if needed); your circle key is sent to them"),
                       ("remove", "remove a friend: your circle key is replaced and sent to the others")):
        f = fsub.add_parser(name, help=text)
        net(f)
        f.add_argument("address")
        if name == "add":
            f.add_argument("--name", help="their name in your contacts (if they are not one yet)")
    f = fsub.add_parser("list", help="your friends")
    f.add_argument("--json", action="store_true")

    p = sub.add_parser("profile", help="your profile (name, bio, photo, visibility), or someone else's")
    psub = p.add_subparsers(dest="profile_cmd", required=True)
    s = psub.add_parser("set", help="change and publish your profile (unset fields keep their value)")
    net(s)
    s.add_argument("--name")
    s.add_argument("--bio")
    s.add_argument("--photo", type=Path, metavar="PATH")
    s.add_argument("--visibility", choices=["world", "friends", "local"])
    s.add_argument("--at", type=position, metavar="LAT,LON", help="local visibility: the area's centre")
    s.add_argument("--radius", type=km, metavar="KM", help="local visibility: the area's radius")
    s = psub.add_parser("show", help="fetch and show someone's profile (what its visibility lets you see)")
    net(s)
    s.add_argument("address")
    s.add_argument("--at", type=position, metavar="LAT,LON", help="your position (for a local-only profile)")
    s.add_argument("--save-photo", type=Path, metavar="FILE", help="write the photo to FILE (decrypted)")
    s.add_argument("--json", action="store_true")


def _open(args: argparse.Namespace) -> Account:
    from .cli import read_passphrase

    return Account.open(args.data_dir, read_passphrase())


def _network_given(args: argparse.Namespace) -> bool:
    return bool(args.bootstrap or args.bootstrap_file)


# -- post ----------------------------------------------------------------------------------------------------------
def cmd_post(args: argparse.Namespace) -> int:
    return asyncio.run(_post(args))


async def _post(args: argparse.Namespace) -> int:
    from .cli import client_node
    from .social import posts

    if not 0 < args.ttl_days <= 30:
        raise KomradeError(f"a post lives from a moment to 30 days, not {args.ttl_days:g} days")
    image = args.image.read_bytes() if args.image is not None else None
    ttl = max(1, int(args.ttl_days * 86400))
    account = _open(args)
    try:
        # every check (text, picture, position) before joining the network: a bad post costs nothing
        await asyncio.to_thread(posts.prepare, args.text, to=args.to, anonymous=args.anonymous, image=image,
                                at=args.at, radius_km=args.radius, precision_km=args.precision, ttl=ttl)
        async with client_node(args) as node:
            sent = await posts.publish_post(account, node, args.text, to=args.to, anonymous=args.anonymous,
                                            image=image, at=args.at, radius_km=args.radius,
                                            precision_km=args.precision, ttl=ttl)
    finally:
        account.close()
    print(sent.id)
    if sent.area is not None:
        print(f"published position: {sent.area.lat:.4f},{sent.area.lon:.4f} (a cell of {sent.area.level_km:g} km), "
              f"radius {sent.area.radius_km:g} km", flush=True)
    return 0


# -- feed ----------------------------------------------------------------------------------------------------------
def cmd_feed(args: argparse.Namespace) -> int:
    return asyncio.run(_feed(args))


async def _feed(args: argparse.Namespace) -> int:
    from . import geo
    from .cli import client_node
    from .cli_organize import feed_votes
    from .social import posts

    if args.which == "local":
        if args.at is None:
            raise KomradeError("the local feed needs your position: --at LAT,LON")
        geo.check_position(*args.at)
        if args.radius is not None:
            geo.check_radius(args.radius)
    elif args.at is not None or args.radius is not None:
        raise KomradeError("--at and --radius are for the local feed")
    account = _open(args)
    try:
        async with client_node(args) as node:
            read = await posts.read_feed(account, node, args.which, at=args.at)
            shown = posts.feed_posts(account, args.which, at=args.at, radius_km=args.radius, limit=max(1, args.limit))
            votes = await feed_votes(account, node, [p.id for p in shown]) if args.json else {}  # issue 11
        saved = _save_pictures(account, shown, args.save_pictures) if args.save_pictures else {}
    finally:
        account.close()
    for post in read.new:
        if post.image_error:
            print(f"komrade: warning: the image of post {post.id} could not be fetched: {printable(post.image_error)}",
                  file=__import__("sys").stderr)
    if args.json:
        print(json.dumps({"posts": [{**p.public_dict(), "votes": votes[p.id], **({"saved": saved[p.id]} if p.id in saved
                                                                                 else {})} for p in shown]}))
        return 0
    if not shown:
        print(f"no {args.which} posts")
    width = shutil.get_terminal_size().columns
    for p in shown:
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(p.posted_at))
        if p.anonymous:
            head = f"{when}  anonymous"
        else:
            head = f"{when}  [{printable(p.author_fingerprint or '')}]  {truncate(p.author_name or '', 48)}"
        print(head + f"  ({p.id[:12]})")
        print(printable_block(p.text, width=width))
        if p.id in saved:
            print(f"    image: {printable(saved[p.id])}")
        elif p.image:
            print("    image: kept here, encrypted (--save-pictures DIR writes it out)")
        elif p.image_error:
            print(f"    image unavailable: {printable(p.image_error)}")
    return 0


def _save_pictures(account: Account, shown: list[Any], directory: Path) -> dict[str, str]:
    """Write the pictures of ``shown`` posts to ``directory`` (the user asked for decrypted files); post id -> path."""
    from .social import posts

    directory.mkdir(parents=True, exist_ok=True)
    saved = {}
    for p in shown:
        picture = posts.image(account, p.id) if p.image else None
        if picture is not None:
            path = directory / f"{p.id}.jpg"
            path.write_bytes(picture)
            saved[p.id] = str(path)
    return saved


# -- friends -------------------------------------------------------------------------------------------------------
def cmd_friend(args: argparse.Namespace) -> int:
    return asyncio.run(_friend(args))


async def _friend(args: argparse.Namespace) -> int:
    from .cli import client_node
    from .social import friends

    account = _open(args)
    try:
        if args.friend_cmd == "list":
            people = friends.friends(account)
            if args.json:
                print(json.dumps({"friends": [f.__dict__ for f in people]}))
                return 0
            for f in people:
                flags = ("" if f.has_key else "  (has not added you)") + ("" if f.key_sent else "  (key not sent yet)")
                print(f"[{f.fingerprint}]  {truncate(f.name, 48)}{flags}\n    {printable(f.address)}")
            if not people:
                print("no friends yet")
            return 0
        if args.friend_cmd == "add":
            friend = friends.add_friend(account, args.address, args.name)
            print(f"friend [{friend.fingerprint}]  {truncate(friend.name, 48)}")
        else:
            friend = friends.remove_friend(account, args.address)
            print(f"removed [{friend.fingerprint}]  {truncate(friend.name, 48)}; your circle key was replaced")
        if _network_given(args):
            async with client_node(args) as node:
                sent = await friends.deliver_keys(account, node)
            print(f"circle key sent to {sent} friend{'s' if sent != 1 else ''}")
        else:
            print("circle key queued: it is sent at your next post, feed or friend command with --bootstrap")
    finally:
        account.close()
    return 0


# -- profiles ------------------------------------------------------------------------------------------------------
def cmd_profile(args: argparse.Namespace) -> int:
    return asyncio.run(_profile(args))


async def _profile(args: argparse.Namespace) -> int:
    from .cli import client_node
    from .social import profiles

    account = _open(args)
    try:
        if args.profile_cmd == "set":
            photo = args.photo.read_bytes() if args.photo is not None else None
            async with client_node(args) as node:
                acks = await profiles.set_profile(account, node, name=args.name, bio=args.bio, photo=photo,
                                                  visibility=args.visibility, at=args.at, radius_km=args.radius)
            mine = profiles.my_profile(account)
            print(f"profile published ({mine['vis']}, version {mine['seq']}, {acks} holders)")
            return 0
        async with client_node(args) as node:
            profile = await profiles.show_profile(account, node, args.address, at=args.at)
        picture = profiles.photo(account, args.address) if profile.photo and args.save_photo else None
        if picture is not None:
            args.save_photo.write_bytes(picture)
    finally:
        account.close()
    if args.json:
        print(json.dumps({**profile.__dict__, **({"saved": str(args.save_photo)} if picture is not None else {})}))
        return 0
    print(f"[{printable(profile.fingerprint)}]  visibility: {profile.visibility}")
    if not profile.visible:
        why = {"friends": "only their friends can read it", "local": "only readers inside its area see it"}
        area = f" (within {profile.area[2]:g} km of {profile.area[0]:.3f},{profile.area[1]:.3f})" if profile.area else ""
        print(f"    {why.get(profile.visibility, 'not visible to you')}{area}")
        return 0
    print(f"    name: {printable(profile.name or '')}")
    print("    bio:")
    print(printable_block(profile.bio or "", indent="      "))
    if picture is not None:
        print(f"    photo: {printable(str(args.save_photo))}")
    elif profile.photo:
        print("    photo: kept here, encrypted (--save-photo FILE writes it out)")
    elif profile.photo_error:
        print(f"    photo unavailable: {printable(profile.photo_error)}")
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "post": cmd_post,
    "feed": cmd_feed,
    "friend": cmd_friend,
    "profile": cmd_profile,
}
