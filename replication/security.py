"""Optional CURVE encryption and authentication for a group's sockets.

For: turning a group file's ``keys_dir`` into ZeroMQ CURVE settings — every
bound socket (node ROUTER and PUB, witness ROUTER) is a CURVE server with
its own key pair, and only accepts peers whose public key is in
``keys_dir`` (checked by pyzmq's ZAP authenticator thread); every connecting
socket is a CURVE client that pins the server's public key. Also creating
the key pairs (``matchcore keys``). Not for: authorisation of individual
requests (any holder of a key in ``keys_dir`` may trade), or key rotation.

Layout of ``keys_dir`` (what ``zmq.auth.create_certificates`` writes)::

    <node>.key, <node>.key_secret      one pair per node in the group file
    witness.key, witness.key_secret
    client.key, client.key_secret      used by clients and operator tools

With no ``keys_dir`` everything is plaintext, as before.
"""

from __future__ import annotations

import os
from typing import Any

import zmq
import zmq.auth

CLIENT_CERT = "client"


def cert_names(cfg: Any) -> list[str]:
    """Every key pair a group needs: its nodes, the witness (if any), and the shared client pair."""
    return [*cfg.nodes, *(["witness"] if cfg.witness else []), CLIENT_CERT]


def create_keys(cfg: Any) -> list[str]:
    """Create the missing key pairs of ``cfg`` in ``cfg.keys_dir``; return the names created."""
    if not cfg.keys_dir:
        raise ValueError(f"{cfg.path} has no keys_dir")
    os.makedirs(cfg.keys_dir, exist_ok=True)
    made = []
    for name in cert_names(cfg):
        if not os.path.exists(os.path.join(cfg.keys_dir, f"{name}.key_secret")):
            zmq.auth.create_certificates(cfg.keys_dir, name)
            made.append(name)
    return made


def _pair(keys_dir: str, name: str) -> tuple[bytes, bytes]:
    public, secret = zmq.auth.load_certificate(os.path.join(keys_dir, f"{name}.key_secret"))
    if secret is None:  # pragma: no cover - load_certificate of a .key_secret always has it
        raise ValueError(f"no secret key for {name} in {keys_dir}")
    return public, secret


def public_key(keys_dir: str, name: str) -> bytes:
    public, _ = zmq.auth.load_certificate(os.path.join(keys_dir, f"{name}.key"))
    return public


def start_authenticator(ctx: zmq.Context, keys_dir: str) -> Any:
    """Start the ZAP handler that admits only the public keys found in ``keys_dir``."""
    from zmq.auth.thread import ThreadAuthenticator

    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve(domain="*", location=keys_dir)
    return auth


def make_server(sock: zmq.Socket, keys_dir: str, name: str) -> None:
    """Make ``sock`` (before ``bind``) a CURVE server with ``name``'s key pair."""
    public, secret = _pair(keys_dir, name)
    sock.curve_publickey = public
    sock.curve_secretkey = secret
    sock.curve_server = True


def make_client(sock: zmq.Socket, keys_dir: str, server: str, me: str = CLIENT_CERT) -> None:
    """Make ``sock`` (before ``connect``) a CURVE client of ``server``, as ``me``."""
    public, secret = _pair(keys_dir, me)
    sock.curve_publickey = public
    sock.curve_secretkey = secret
    sock.curve_serverkey = public_key(keys_dir, server)
