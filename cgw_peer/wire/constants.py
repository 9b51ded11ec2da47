"""IKEv1 / ISAKMP wire numbers (RFC 2408, RFC 2409, RFC 2407, RFC 3706, RFC 3947).

Only the values this engine sends or checks are listed; unknown values on the wire are kept as plain ints.
"""

from __future__ import annotations

from enum import IntEnum


class ExchangeType(IntEnum):
    """RFC 2408 §3.1 / RFC 2409 §5: ISAKMP exchange types."""

    ID_PROT = 2
    """Main Mode."""
    AGGRESSIVE = 4
    INFORMATIONAL = 5
    QUICK_MODE = 32


class PayloadType(IntEnum):
    """RFC 2408 §3.1 next-payload values (plus RFC 3947 NAT-D = 20)."""

    NONE = 0
    SA = 1
    PROPOSAL = 2
    TRANSFORM = 3
    KE = 4
    ID = 5
    CERT = 6
    CERTREQ = 7
    HASH = 8
    SIG = 9
    NONCE = 10
    NOTIFY = 11
    DELETE = 12
    VENDOR_ID = 13
    NAT_D = 20


class Flags(IntEnum):
    """RFC 2408 §3.1 header flags."""

    ENCRYPTION = 0x01
    COMMIT = 0x02
    AUTH_ONLY = 0x04


class ProtocolId(IntEnum):
    """RFC 2407 §4.4.1 protocol identifiers."""

    ISAKMP = 1
    AH = 2
    ESP = 3


class NotifyType(IntEnum):
    """RFC 2408 §3.14.1 error types, RFC 2407 §4.6.3 status types, RFC 3706 DPD."""

    INVALID_PAYLOAD_TYPE = 1
    DOI_NOT_SUPPORTED = 2
    INVALID_COOKIE = 4
    INVALID_EXCHANGE_TYPE = 7
    INVALID_FLAGS = 8
    INVALID_MESSAGE_ID = 9
    INVALID_PROTOCOL_ID = 10
    INVALID_SPI = 11
    BAD_PROPOSAL_SYNTAX = 15
    NO_PROPOSAL_CHOSEN = 14
    PAYLOAD_MALFORMED = 16
    INVALID_KEY_INFORMATION = 17
    INVALID_ID_INFORMATION = 18
    AUTHENTICATION_FAILED = 24
    INVALID_HASH_INFORMATION = 23
    INITIAL_CONTACT = 24578
    RESPONDER_LIFETIME = 24576
    R_U_THERE = 36136
    R_U_THERE_ACK = 36137


class IdType(IntEnum):
    """RFC 2407 §4.6.2.1 identification types."""

    IPV4_ADDR = 1
    FQDN = 2
    USER_FQDN = 3
    IPV4_ADDR_SUBNET = 4
    IPV6_ADDR = 5
    IPV6_ADDR_SUBNET = 6
    IPV4_ADDR_RANGE = 7
    IPV6_ADDR_RANGE = 8
    DER_ASN1_DN = 9
    DER_ASN1_GN = 10
    KEY_ID = 11


class P1Attr(IntEnum):
    """RFC 2409 App. A phase-1 attribute classes."""

    ENCRYPTION = 1
    HASH = 2
    AUTH_METHOD = 3
    GROUP = 4
    LIFE_TYPE = 11
    LIFE_DURATION = 12
    KEY_LENGTH = 14


class P2Attr(IntEnum):
    """RFC 2407 §4.5 IPsec SA attributes."""

    LIFE_TYPE = 1
    LIFE_DURATION = 2
    GROUP = 3
    ENCAPSULATION_MODE = 4
    AUTH_ALGORITHM = 5
    KEY_LENGTH = 6


class EncapMode(IntEnum):
    """RFC 2407 §4.5 and RFC 3947 §5.1 encapsulation modes."""

    TUNNEL = 1
    TRANSPORT = 2
    UDP_TUNNEL = 3
    UDP_TRANSPORT = 4


DOI_IPSEC = 1
"""RFC 2407: the IPsec Domain of Interpretation."""
SIT_IDENTITY_ONLY = 1
"""RFC 2407 §4.2: situation bitmap."""
KEY_IKE = 1
"""RFC 2407 §4.4.2: transform id of a phase-1 transform."""
LIFE_SECONDS = 1
AUTH_PSK = 1

ISAKMP_VERSION = 0x10
"""Major 1, minor 0."""

DPD_VENDOR_ID = bytes.fromhex("afcad71368a1f1c96b8696fc77570100")
"""RFC 3706 §5.1."""
NATT_RFC3947_VENDOR_ID = bytes.fromhex("4a131c81070358455c5728f20e95452f")
"""RFC 3947 §3.1: MD5("RFC 3947")."""

# NAT-T: one definition for both versions (cgw_peer.natt), re-exported here.
from cgw_peer.natt import IKE_PORT as IKE_PORT  # noqa: E402
from cgw_peer.natt import NAT_KEEPALIVE as NAT_KEEPALIVE  # noqa: E402
from cgw_peer.natt import NATT_PORT as NATT_PORT  # noqa: E402
from cgw_peer.natt import NON_ESP_MARKER as NON_ESP_MARKER  # noqa: E402
