#!/usr/bin/env python3
"""Render deploy/redis/users.acl from its commented source, users.acl.in.

Redis ACL files allow no comments and no line continuations, so the rules are written and
reviewed in users.acl.in (comments, `define NAME = value`, indented continuation lines) and this
script writes the one-line-per-user file that `redis-server --aclfile` loads.

Usage:
  render-acl.py                     write users.acl next to this script
  render-acl.py --check             exit 1 when users.acl is not what users.acl.in renders to
  render-acl.py --stdout            print the rendered file
  render-acl.py --access-strings    print "<user> <rules>" without the password, for services that
                                    take an access string and a password separately (ElastiCache
                                    RBAC users, Redis Cloud roles, ACL SETUSER scripts); the
                                    OrderShop roles only, not the default or replication user
  render-acl.py --users             print the user names, one per line

Only the Python standard library is used.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "users.acl.in"
TARGET = HERE / "users.acl"

_COMMENT = re.compile(r"(^|\s)#(\s.*)?$")
_DEFINE = re.compile(r"^define\s+([A-Z_][A-Z0-9_]*)\s*=\s*(.*)$")
_REF = re.compile(r"\$\{(?:(R|W|RW):)?([A-Z_][A-Z0-9_]*)\}")
_PASSWORD = re.compile(r"^(>|<|#|!)")


class RenderError(Exception):
    pass


def _strip_comment(line: str) -> str:
    match = _COMMENT.search(line)
    return line[: match.start()] if match else line


def _substitute(text: str, defines: dict[str, str], lineno: int) -> str:
    def repl(m: re.Match[str]) -> str:
        permission, name = m.group(1), m.group(2)
        if name not in defines:
            raise RenderError(f"users.acl.in:{lineno}: ${{{name}}} is not defined above this line")
        if permission:  # ${R:NAME}: every pattern of NAME as a read-only key pattern, and so on
            return " ".join(f"%{permission}~{pattern}" for pattern in defines[name].split())
        return defines[name]

    return _REF.sub(repl, text)


def parse(source: str) -> list[list[str]]:
    """Returns one token list per user, `user NAME rule...`, in file order."""
    defines: dict[str, str] = {}
    users: list[list[str]] = []
    current: list[str] | None = None
    for lineno, raw in enumerate(source.splitlines(), start=1):
        text = _strip_comment(raw).rstrip()
        if not text.strip():
            continue
        continued = raw[:1].isspace()
        body = _substitute(text.strip(), defines, lineno)
        if continued:
            if current is None:
                raise RenderError(f"users.acl.in:{lineno}: indented line outside a user")
            current.extend(body.split())
            continue
        current = None
        define = _DEFINE.match(body)
        if define:
            defines[define.group(1)] = define.group(2).strip()
            continue
        tokens = body.split()
        if tokens[0] != "user" or len(tokens) < 2:
            raise RenderError(f"users.acl.in:{lineno}: expected `define` or `user NAME ...`, got {tokens[0]!r}")
        current = tokens
        users.append(current)
    names = [u[1] for u in users]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise RenderError(f"users.acl.in: users defined twice: {', '.join(sorted(duplicates))}")
    return users


def render(users: list[list[str]]) -> str:
    return "".join(" ".join(u) + "\n" for u in users)


# Users a managed Redis does not take from us: its default user is its own (the rules here are
# for a self-managed server's AOF replay), and it replicates on its own.
_SELF_MANAGED_ONLY = ("default", "ordershop-replication")


def access_strings(users: list[list[str]]) -> str:
    lines = []
    for tokens in users:
        if tokens[1] in _SELF_MANAGED_ONLY:
            continue
        rules = [t for t in tokens[2:] if not _PASSWORD.match(t) and t not in ("nopass", "resetpass")]
        lines.append(f"{tokens[1]} {' '.join(rules)}")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true")
    mode.add_argument("--stdout", action="store_true")
    mode.add_argument("--access-strings", action="store_true")
    mode.add_argument("--users", action="store_true")
    args = parser.parse_args(argv)
    try:
        users = parse(SOURCE.read_text())
    except RenderError as error:
        print(f"render-acl: {error}", file=sys.stderr)
        return 2
    rendered = render(users)
    if args.check:
        current = TARGET.read_text() if TARGET.exists() else ""
        if current != rendered:
            print("render-acl: users.acl is out of date; run python3 deploy/redis/render-acl.py", file=sys.stderr)
            return 1
        return 0
    if args.stdout:
        sys.stdout.write(rendered)
    elif args.access_strings:
        sys.stdout.write(access_strings(users))
    elif args.users:
        sys.stdout.write("".join(u[1] + "\n" for u in users))
    else:
        TARGET.write_text(rendered)
        print(f"wrote {TARGET.relative_to(HERE.parent.parent)} ({len(users)} users)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
