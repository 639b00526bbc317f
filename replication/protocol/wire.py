"""The wire: one namespace for everything replication puts on a socket or in a journal.

For: naming, as ``wire.X``, what six modules of one role each define (the
rest of the code imports this one, never them):

- ``messages``: the message dataclasses (``Request``, ``Reply``, ``Entries``,
  ``Heartbeat``, ``VoteRequest``, ...), ``MESSAGE_TYPES``, and the constants
  they carry: reply statuses (``OK`` .. ``BUSY``, ``STATUS_NAMES``), roles
  (``ROLE_*``), vote flags (``VOTE_*``); ``RequestRun`` (a packed ``Requests``);
- ``codec``: frames: ``encode``, ``decode``, ``decode_packed``, the header
  (``MAGIC``, ``VERSION``, ``HEADER``), the limits (``MAX_PAYLOAD``,
  ``MAX_INBOUND_FRAME``, ``MAX_INBOUND_ENTRIES``) and the hot paths
  ``encode_request_window``, ``encode_request_records``, ``encode_replies``;
- ``records``: fixed-size records and their packed containers: ``Entry``,
  ``ENTRY``, ``ENTRY_DTYPE``, ``COMMAND``, ``COMMAND_SIZE``, ``EVENT_SIZE``,
  ``PackedRun``, ``EntryRun``, ``EventBlobs``, ``pack_entries``, ``pack_command``;
- ``outputs``: what the sans-IO machines return: ``Send``, ``Publish``,
  ``ReplyColumns``, ``ReplyRun``, and ``Address``;
- ``fields``: ``DecodeError`` and the payload field codecs;
- ``service_messages``: execution reports and queries (``ReportFetch``,
  ``Reports``, ``Query``, ``QueryReply``, the status ``GONE``).

Not for: definitions (each lives in its module above). The three private
names kept here (``_frame``, ``_REQUEST``, ``_BUNDLED_REPLY``) are read by the
compiled client decoder (``_client_fast.pyx``) and its tests.
"""

from __future__ import annotations

from .codec import (
    HEADER,
    HEADER_SIZE,
    MAGIC,
    MAX_INBOUND_ENTRIES,
    MAX_INBOUND_FRAME,
    MAX_PAYLOAD,
    VERSION,
    decode,
    decode_packed,
    encode,
    encode_replies,
    encode_request_records,
    encode_request_window,
    make_frame,
)
from .fields import DecodeError
from .messages import (
    BUNDLED_REPLY,
    BUSY,
    EXPIRED,
    FENCED,
    MESSAGE_TYPES,
    NOT_PRIMARY,
    OK,
    ROLE_DIVERGED,
    ROLE_DRAINING,
    ROLE_NAMES,
    ROLE_PRIMARY,
    ROLE_STANDBY,
    ROLE_WITNESS,
    STATUS_NAMES,
    UNAVAILABLE,
    VOTE_FORCED,
    VOTE_OPERATOR,
    VOTE_ORDINARY,
    Ack,
    Entries,
    Fence,
    Handover,
    Heartbeat,
    IsrAck,
    IsrUpdate,
    Join,
    Lease,
    Message,
    PeerDown,
    Promote,
    Refill,
    Replies,
    Reply,
    Request,
    RequestRun,
    Requests,
    SnapshotChunk,
    Status,
    StatusRequest,
    Switchover,
    Vote,
    VoteRequest,
)
from .outputs import Address, Publish, ReplyColumns, ReplyRun, Send
from .records import (
    COMMAND,
    COMMAND_SIZE,
    ENTRY,
    ENTRY_DTYPE,
    EVENT_SIZE,
    REQUEST,
    REQUEST_DTYPE,
    RUN_MIN,
    Entry,
    EntryRun,
    EventBlobs,
    PackedRun,
    pack_command,
    pack_entries,
    unpack_command,
)
from .service_messages import (
    GONE,
    QUERY_OPEN_ORDERS,
    QUERY_ORDER,
    Query,
    QueryReply,
    ReportFetch,
    Reports,
)

# The names the compiled client decoder (_client_fast.pyx) and its tests read.
_frame = make_frame
_REQUEST = REQUEST
_BUNDLED_REPLY = BUNDLED_REPLY

__all__ = [
    "GONE",
    "QUERY_OPEN_ORDERS",
    "QUERY_ORDER",
    "Query",
    "QueryReply",
    "ReportFetch",
    "Reports",
    "Ack",
    "Address",
    "BUNDLED_REPLY",
    "BUSY",
    "COMMAND",
    "COMMAND_SIZE",
    "DecodeError",
    "ENTRY",
    "ENTRY_DTYPE",
    "EVENT_SIZE",
    "EXPIRED",
    "Entries",
    "Entry",
    "EntryRun",
    "EventBlobs",
    "FENCED",
    "Fence",
    "HEADER",
    "HEADER_SIZE",
    "Handover",
    "Heartbeat",
    "IsrAck",
    "IsrUpdate",
    "Join",
    "Lease",
    "MAGIC",
    "MAX_INBOUND_ENTRIES",
    "MAX_INBOUND_FRAME",
    "MAX_PAYLOAD",
    "MESSAGE_TYPES",
    "Message",
    "NOT_PRIMARY",
    "OK",
    "PackedRun",
    "PeerDown",
    "Promote",
    "Publish",
    "REQUEST",
    "REQUEST_DTYPE",
    "ROLE_DIVERGED",
    "ROLE_DRAINING",
    "ROLE_NAMES",
    "ROLE_PRIMARY",
    "ROLE_STANDBY",
    "ROLE_WITNESS",
    "RUN_MIN",
    "Refill",
    "Replies",
    "Reply",
    "ReplyColumns",
    "ReplyRun",
    "Request",
    "RequestRun",
    "Requests",
    "STATUS_NAMES",
    "Send",
    "SnapshotChunk",
    "Status",
    "StatusRequest",
    "Switchover",
    "UNAVAILABLE",
    "VERSION",
    "VOTE_FORCED",
    "VOTE_OPERATOR",
    "VOTE_ORDINARY",
    "Vote",
    "VoteRequest",
    "decode",
    "decode_packed",
    "encode",
    "encode_replies",
    "encode_request_records",
    "encode_request_window",
    "make_frame",
    "pack_command",
    "pack_entries",
    "unpack_command",
]
