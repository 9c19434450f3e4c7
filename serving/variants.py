"""Several models side by side (A/B): which one answers a request. Pure; no Ray.

A user's model follows from a stable hash of their user_id, so the same user gets the same
model on every replica, call and restart, and each model gets its configured share of users.
A request may pin a model by name. Anonymous requests (no user_id) fall to a model by chance,
in the same shares: there is no user to keep them with.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate

from attnrec.serving.codec import InvalidArgument, shorten

NAME = re.compile(r"[A-Za-z0-9_]{1,32}")  # becomes part of a deployment name (Recommender-NAME)


@dataclass(frozen=True)
class Variant:
    """One model of several served side by side."""

    name: str  # how requests pin it, and what `attnrec report` compares
    checkpoint: str  # its checkpoint directory
    share: float  # its part of the users; the shares of all variants are scaled to sum to 1


def parse_model(text: str) -> Variant:
    """`NAME=DIR:SHARE` (attnrec serve --model) -> Variant; DIR may hold ':' (s3://...)."""
    name, eq, rest = text.partition("=")
    path, colon, share = rest.rpartition(":")
    try:
        value = float(share)
    except ValueError:
        value = None
    if not eq or not colon or not path or value is None:
        raise ValueError(f"--model {text!r}: expected NAME=DIR:SHARE, e.g. a=runs/model_a:0.9")
    return Variant(name, path, value)


def check_variants(variants: Sequence[Variant]) -> tuple[Variant, ...]:
    """The variants with shares scaled to sum to 1; ValueError names what is wrong."""
    names = [v.name for v in variants]
    for v in variants:
        if not NAME.fullmatch(v.name):
            raise ValueError(f"model name {v.name!r}: 1 to 32 letters, digits or '_'")
        if not v.share > 0:
            raise ValueError(f"model {v.name}: share must be > 0, got {v.share}")
    if len(set(names)) != len(names):
        raise ValueError(f"model names must differ, got {names}")
    total = sum(v.share for v in variants)
    return tuple(Variant(v.name, v.checkpoint, v.share / total) for v in variants)


def bucket(user_id: str) -> float:
    """The user's place in [0, 1): the same on every machine and run."""
    return int.from_bytes(hashlib.blake2b(user_id.encode(), digest_size=8).digest(), "big") / 2**64


class Split:
    """Picks the variant that answers a request."""

    def __init__(self, variants: Sequence[Variant]):
        self.names = tuple(v.name for v in variants)
        self.bounds = tuple(accumulate(v.share for v in variants))  # cumulative shares, the last ~1

    def pick(self, user_id: str, pinned: str = "") -> str:
        """The name of the variant for a user (or the pinned one); "" when only one model is served."""
        if pinned:
            if pinned not in self.names:
                raise InvalidArgument("model_name", f"no model {shorten(pinned)} is served"
                                      + (f" (models: {', '.join(self.names)})" if self.names else ""))
            return pinned
        if len(self.names) < 2:
            return self.names[0] if self.names else ""
        place = bucket(user_id) if user_id else random.random()
        return next((n for n, b in zip(self.names, self.bounds) if place < b), self.names[-1])
