"""Optional CURVE encryption and authentication for a group's sockets, one key per identity.

For: turning a group file's ``keys_dir`` (and its ``[operators.NAME]`` and
``[clients.NAME]`` tables) into ZeroMQ CURVE settings. Every bound socket
(node ROUTER and PUB, witness ROUTER) is a CURVE server with its own key
pair; every connecting socket is a CURVE client that pins the server's
public key. A ZAP handler (:class:`ZapAuthenticator`) admits only the
group's public keys and ties each connection to one identity, the ZAP
``User-Id`` of every frame it delivers: ``node:NAME``, ``witness``,
``operator:NAME`` or ``client:NAME`` (:func:`user_ids`). What an identity may
send is ``replication.protocol.trust``'s business. Also creating the key pairs
(``matchcore keys``: the group's missing pairs, or one pair for a client or
operator who keeps its secret elsewhere, :func:`create_pair`). Not for: key
rotation or revocation (edit the group file or ``keys_dir`` and restart).

Layout of ``keys_dir`` (what ``zmq.auth.create_certificates`` writes)::

    <node>.key, <node>.key_secret      one pair per node in the group file
    witness.key, witness.key_secret
    operator-<NAME>.key(_secret)       one per [operators.NAME] without public_key
    client-<NAME>.key(_secret)         one per [clients.NAME] without public_key
    operator.key(_secret)              the implicit operator, when the file has no [operators]
    client.key(_secret)                the implicit client (any client id), when it has no [clients]

A table's ``public_key`` (Z85), when given, is the identity's key and no
file is read for it: its holder keeps the secret elsewhere. Give a tool its
key by name (``operator-ops``, looked up in ``keys_dir``) or by the path of
its ``.key_secret`` file. With no ``keys_dir`` everything is plaintext.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85

log = logging.getLogger("replication.security")

CLIENT_CERT = "client"  # the implicit client's key name (a group file with no [clients])
OPERATOR_CERT = "operator"  # the implicit operator's key name (a group file with no [operators])


def operator_names(cfg: Any) -> list[str]:
    """The group's operators: its ``[operators.NAME]`` tables, or the implicit ``operator``."""
    return list(cfg.operators) or [OPERATOR_CERT]


def client_names(cfg: Any) -> list[str]:
    """The group's clients: its ``[clients.NAME]`` tables, or the implicit ``client``."""
    return list(cfg.clients) or [CLIENT_CERT]


def key_name(role: str, name: str, cfg: Any) -> str:
    """The key file stem of an operator or client: ``operator-NAME`` (``operator`` if implicit)."""
    tables = cfg.operators if role == "operator" else cfg.clients
    return f"{role}-{name}" if tables else role


def default_operator_key(cfg: Any) -> str:
    """The key an operator tool uses by default: the first operator's."""
    return key_name("operator", operator_names(cfg)[0], cfg)


def client_key_for(cfg: Any, client_id: int) -> str:
    """The key a ``Client`` of ``client_id`` uses by default: its ``[clients]`` entry's, else ``client``."""
    for name, spec in cfg.clients.items():
        if spec.client_id == client_id:
            return key_name("client", name, cfg)
    named_any = [n for n, s in cfg.clients.items() if s.client_id == 0]
    return key_name("client", named_any[0], cfg) if named_any else CLIENT_CERT


def cert_names(cfg: Any) -> list[str]:
    """Every key pair a group keeps in ``keys_dir``: nodes, witness, and operators/clients without public_key."""
    names = [*cfg.nodes, *(["witness"] if cfg.witness else [])]
    for role, tables in (("operator", cfg.operators), ("client", cfg.clients)):
        if not tables:
            names.append(role)
        names += [key_name(role, n, cfg) for n, spec in tables.items() if not spec.public_key]
    return names


def create_pair(directory: str, name: str) -> bytes:
    """Create the key pair ``directory/name.key`` and ``name.key_secret``; return its public key (Z85).

    The secret file is made readable by its owner only: it is the identity. An
    existing pair is never overwritten (``FileExistsError``): its public key
    may be in a group file already.
    """
    if os.path.exists(os.path.join(directory, f"{name}.key_secret")):
        raise FileExistsError(
            f"{os.path.join(directory, name)}.key_secret exists: keep it, or remove it first"
        )
    os.makedirs(directory, exist_ok=True)
    _, secret_file = zmq.auth.create_certificates(directory, name)
    os.chmod(secret_file, 0o600)
    return public_key(directory, name)


def create_keys(cfg: Any) -> list[str]:
    """Create the missing key pairs of ``cfg`` in ``cfg.keys_dir``; return the names created."""
    if not cfg.keys_dir:
        raise ValueError(f"{cfg.path} has no keys_dir")
    os.makedirs(cfg.keys_dir, exist_ok=True)
    made = []
    for name in cert_names(cfg):
        if not os.path.exists(os.path.join(cfg.keys_dir, f"{name}.key_secret")):
            create_pair(cfg.keys_dir, name)
            made.append(name)
    return made


def _secret_path(keys_dir: str, name: str) -> str:
    if os.sep in name or name.endswith(".key_secret"):
        return name  # a path to a key file
    return os.path.join(keys_dir, f"{name}.key_secret")


def _pair(keys_dir: str, name: str) -> tuple[bytes, bytes]:
    path = _secret_path(keys_dir, name)
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise ValueError(f"no CURVE key pair {path} ({exc}); `matchcore keys` creates the group's") from exc
    if secret is None:
        raise ValueError(f"{path} holds no secret key")
    return public, secret


def public_key(keys_dir: str, name: str) -> bytes:
    """``name``'s public key in ``keys_dir``, Z85-encoded (as pyzmq's key files and sockets take it)."""
    public, _ = zmq.auth.load_certificate(os.path.join(keys_dir, f"{name}.key"))
    return public


def user_ids(cfg: Any) -> dict[bytes, str]:
    """Public key (Z85, 40 bytes) -> ZAP User-Id for every identity of the group. O(identities).

    A key missing from ``keys_dir`` (and not given in the group file) is
    skipped with a log line: that identity cannot connect, the rest can.
    """
    ids: dict[bytes, str] = {}

    def add(key: bytes, user: str) -> None:
        if key in ids:
            raise ValueError(f"{cfg.path}: {user} and {ids[key]} share one public key")
        ids[key] = user

    def from_file(stem: str, user: str) -> None:
        try:
            add(public_key(cfg.keys_dir, stem), user)
        except OSError:
            log.warning("key_missing user=%s file=%s.key in %s: it cannot connect", user, stem, cfg.keys_dir)

    for name in cfg.nodes:
        from_file(name, f"node:{name}")
    if cfg.witness:
        from_file("witness", "witness")
    for role, tables in (("operator", cfg.operators), ("client", cfg.clients)):
        if not tables:
            from_file(role, f"{role}:{role}")
        for name, spec in tables.items():
            if spec.public_key:
                add(spec.public_key.encode(), f"{role}:{name}")
            else:
                from_file(key_name(role, name, cfg), f"{role}:{name}")
    return ids


# The ZAP domain of a node's drop-copy stream (its XPUB): every order's client id and account
# travel on it, so under CURVE only operators, nodes and the witness may read it, never a
# client key (a client reads its own execution reports; docs/operations.md "Execution reports").
DROP_COPY_DOMAIN = "dropcopy"
_DROP_COPY_ROLES = ("operator", "node", "witness")


class ZapAuthenticator(ThreadAuthenticator):
    """pyzmq's ZAP thread, admitting the group's keys only, each with its identity as User-Id
    (and, on the drop-copy stream's domain, only operator, node and witness keys)."""

    def __init__(self, ctx: zmq.Context, ids: dict[bytes, str]) -> None:
        super().__init__(ctx)
        self.ids = ids

    def callback(self, domain: str, z85_key: bytes) -> bool:  # pyzmq's provider call
        user = self.ids.get(z85_key)
        if user is None:
            return False
        return domain != DROP_COPY_DOMAIN or user.partition(":")[0] in _DROP_COPY_ROLES

    def curve_user_id(self, client_public_key: bytes) -> str:
        return self.ids[z85.encode(client_public_key)]


def start_authenticator(ctx: zmq.Context, cfg: Any) -> ZapAuthenticator:
    """Start the ZAP handler of ``cfg``'s identities (before any CURVE server socket binds)."""
    auth = ZapAuthenticator(ctx, user_ids(cfg))
    auth.start()
    auth.configure_curve_callback(domain="*", credentials_provider=auth)
    auth.configure_curve_callback(domain=DROP_COPY_DOMAIN, credentials_provider=auth)  # (named ones too)
    return auth


def make_server(sock: zmq.Socket, keys_dir: str, name: str) -> None:
    """Make ``sock`` (before ``bind``) a CURVE server with ``name``'s key pair."""
    public, secret = _pair(keys_dir, name)
    sock.curve_publickey = public
    sock.curve_secretkey = secret
    sock.curve_server = True


def make_client(sock: zmq.Socket, keys_dir: str, server: str, me: str = CLIENT_CERT) -> None:
    """Make ``sock`` (before ``connect``) a CURVE client of ``server``, as key ``me`` (a name or a path)."""
    public, secret = _pair(keys_dir, me)
    sock.curve_publickey = public
    sock.curve_secretkey = secret
    sock.curve_serverkey = public_key(keys_dir, server)
