"""podtune's own SSH key pair (ed25519), made once under $PODTUNE_HOME; the public half goes into each pod."""

from __future__ import annotations

import os
from pathlib import Path

from .paths import ssh_key_path


def ensure_keypair(path: Path | None = None) -> tuple[Path, str]:
    """(private key path, public key line); created with 0600 on first use."""
    path = path or ssh_key_path()
    pub_path = path.with_suffix(".pub")
    if not path.exists():
        # Imported only to make the key (once per machine): every run reads it, and cryptography costs ~20 ms.
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        key = Ed25519PrivateKey.generate()
        private = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
        public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(private)
        pub_path.write_text(public.decode() + " podtune\n")
    return path, pub_path.read_text().strip()
