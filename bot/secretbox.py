"""Secrets kept in the database, encrypted with PAYLINK_SECRET_KEY (Fernet: AES-128-CBC and
an HMAC-SHA256 over it, so a wrong key is told apart from a right one)."""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken


class WrongKey(Exception):
    """A stored secret does not decrypt with the key given: it was encrypted with another."""


class SecretBox:
    """Encrypts and decrypts the secrets stored in the database with one Fernet key."""

    def __init__(self, key: str):
        self._fernet = Fernet(key.encode())

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


def new_key() -> str:
    """A fresh key for PAYLINK_SECRET_KEY."""
    return Fernet.generate_key().decode()
