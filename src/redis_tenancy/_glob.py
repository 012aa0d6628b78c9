"""Redis glob patterns that match a key prefix literally.

Redis matches SCAN/KEYS ``MATCH`` patterns, ACL key rules (``~pattern``), ACL channel
rules (``&pattern``) and PSUBSCRIBE patterns with one glob matcher (``stringmatchlen``)
in which ``*``, ``?``, ``[`` ... ``]`` are special and a backslash makes the next
character literal. A tenant prefix such as ``acm?:`` put into a pattern unescaped would
also match ``acmX:``, another tenant's keys: the anchors this project replaces
(redis-namespace, ioredis) did exactly that. Every pattern built from a prefix goes
through :func:`glob_escape`.

One function is used for every kind of pattern on purpose: Redis compares a PSUBSCRIBE
pattern with an ACL channel rule *literally* (not as a glob), so the namespaced client's
escaped PSUBSCRIBE pattern is only allowed when it is spelled exactly like the rule
:func:`redis_tenancy._acl.acl_rules` wrote.
"""

from __future__ import annotations

__all__ = ["GLOB_SPECIAL", "glob_escape", "prefix_pattern"]

#: The characters Redis's glob matcher treats specially (``^`` and ``-`` only mean
#: something inside brackets, which escaping ``[`` rules out).
GLOB_SPECIAL = frozenset("\\*?[]")

_TABLE = str.maketrans({char: "\\" + char for char in GLOB_SPECIAL})


def glob_escape(text: str) -> str:
    """``text`` with every glob-special character backslash-escaped.

    Example::

        >>> glob_escape("a[b]*:")
        'a\\\\[b\\\\]\\\\*:'
    """
    return text.translate(_TABLE)


def prefix_pattern(prefix: str) -> str:
    """The pattern matching exactly the names that start with ``prefix``.

    Example::

        >>> prefix_pattern("acm?:")
        'acm\\\\?:*'
    """
    return glob_escape(prefix) + "*"
