"""API tokens: random secrets shown once, stored only as a peppered HMAC-SHA256 digest.

The pepper is a per-install secret in the data dir (``secret.key``, mode 0600), so a copy of the
database alone does not allow guessing tokens offline.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from .catalog import Catalog


def _pepper(data_dir: Path) -> bytes:
    path = Path(data_dir) / "secret.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


class Tokens:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._pepper = _pepper(catalog.data_dir)

    def digest(self, token: str) -> str:
        return hmac.new(self._pepper, token.encode(), hashlib.sha256).hexdigest()

    def create(self, name: str) -> str:
        token = "ss_" + secrets.token_urlsafe(24)
        self.catalog.add_token(name, self.digest(token))
        return token

    def revoke(self, name: str) -> int:
        return self.catalog.revoke_tokens(name)

    def valid(self, token: str | None) -> bool:
        if not token:
            return False
        digest = self.digest(token)
        stored = self.catalog.active_token_hash(digest)
        return stored is not None and hmac.compare_digest(stored, digest)
