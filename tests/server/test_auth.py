"""Secrets: random, stored as SHA-256, compared in constant time."""

from __future__ import annotations

import hashlib
import re

from schoolmon.server.auth import bearer_secret, hash_secret, matches, new_secret


def test_secrets_are_long_random_and_stored_as_sha256():
    """token_urlsafe(32) gives 43 URL-safe characters; the hash is SHA-256 hex."""
    first, second = new_secret(), new_secret()

    assert (
        bool(re.fullmatch(r"[A-Za-z0-9_-]{43}", first)),
        first != second,
        hash_secret(first),
    ) == (True, True, hashlib.sha256(first.encode()).hexdigest())


def test_matching_and_bearer_headers():
    """Only the right secret matches; only a Bearer header yields a secret."""
    secret = new_secret()

    assert [
        matches(secret, hash_secret(secret)),
        matches(secret + "x", hash_secret(secret)),
        matches(secret, None),
        bearer_secret(f"Bearer {secret}"),
        bearer_secret(f"bearer  {secret} "),
        bearer_secret(f"Basic {secret}"),
        bearer_secret("Bearer "),
        bearer_secret(None),
    ] == [True, False, False, secret, secret, None, None, None]
