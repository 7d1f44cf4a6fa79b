"""``fluxon keygen``, ``fluxon pubkey`` and ``fluxon client-key``: key management commands.

No command takes a private key as an argument: argv is visible to every local user
(``ps``), so keys come from files or ``$FLUXON_PRIVATE_KEY`` only.
"""

from __future__ import annotations

import click

from fluxon.errors import ConfigurationError
from fluxon.keys import (
    PRIVATE_KEY_ENV,
    derive_keys,
    generate_client_keypair,
    generate_private_key,
    load_private_key,
    save_client_keypair,
    write_private_key,
)

__all__ = ["keygen", "pubkey", "client_key"]

_ROLES = ("broker", "worker", "admin")


@click.command("keygen")
@click.option("--out", "out_path", type=click.Path(dir_okay=False),
              help="Write the key to this file (created with mode 0600) instead of printing it.")
@click.option("--force", is_flag=True, help="Overwrite --out if it already exists.")
def keygen(out_path: str | None, force: bool) -> None:
    """Make a new deployment private key (32 random bytes, urlsafe base64); --out creates missing folders."""
    key = generate_private_key()
    if out_path is None:
        click.echo(key)
        return
    try:
        write_private_key(out_path, key, overwrite=force)
    except (ConfigurationError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"wrote a new private key to {out_path} (mode 0600)", err=True)
    # Z85 keys contain $, !, ( and #: single quotes keep a shell from reading them.
    click.echo(f"broker public key: '{derive_keys(key).broker.public_text}'", err=True)


@click.command("pubkey")
@click.option("--key-file", type=click.Path(dir_okay=False),
              help=f"File holding the private key (default: ${PRIVATE_KEY_ENV}).")
@click.option("--role", type=click.Choice(_ROLES), default="broker", show_default=True,
              help="Which derived public key to print (clients need the broker's).")
def pubkey(key_file: str | None, role: str) -> None:
    """Print the broker's CURVE public key (Z85), derived from the private key."""
    try:
        key = load_private_key(key_file)
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from exc
    if key is None:
        raise click.ClickException(f"no private key: pass --key-file FILE or set ${PRIVATE_KEY_ENV}")
    click.echo(getattr(derive_keys(key), role).public_text)


@click.command("client-key")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Overwrite PATH and PATH.pub if they exist.")
def client_key(path: str, force: bool) -> None:
    """Write a client CURVE keypair: PATH (secret, mode 0600) and PATH.pub (for --allow-clients)."""
    pair = generate_client_keypair()
    try:
        public_path = save_client_keypair(path, pair, overwrite=force)
    except (ConfigurationError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"wrote {path} (secret, mode 0600) and {public_path}", err=True)
    click.echo(pair.public_text)
