"""Secrets kept in the database, encrypted with PAYLINK_SECRET_KEY (Fernet: AES-128-CBC and
an HMAC-SHA256 over it, so a wrong key is told apart from a right one).

PAYLINK_SECRET_KEY may name several keys, comma-separated, the newest first: a secret is
encrypted with the first and decrypted with whichever opens it, so processes keep working
while a rotation re-encrypts what is stored (``paylink rotate-key``)."""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class WrongKey(Exception):
    """A stored secret does not decrypt with the key given: it was encrypted with another."""


class SecretBox:
    """Encrypts the secrets stored in the database with the first of ``keys`` (Fernet keys,
    comma-separated) and decrypts them with any; ValueError for a malformed key."""

    def __init__(self, keys: str):
        self._fernet = MultiFernet([Fernet(key.strip().encode()) for key in keys.split(",")])

    def __repr__(self) -> str:
        return "SecretBox(key=<hidden>)"

    def seal(self, secret: str) -> str:
        """``secret`` encrypted, as text for a column."""
        return self._fernet.encrypt(secret.encode()).decode()

    def open(self, token: str) -> str:
        """The secret ``token`` holds; WrongKey when this key did not encrypt it."""
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise WrongKey() from None

    def rotate(self, token: str) -> str:
        """``token``'s secret encrypted with the first key; WrongKey when no key opens it."""
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken:
            raise WrongKey() from None


def new_key() -> str:
    """A fresh key for PAYLINK_SECRET_KEY."""
    return Fernet.generate_key().decode()
