"""IKEv2 wire numbers (RFC 7296 §3, IANA "IKEv2 Parameters")."""

from __future__ import annotations

from enum import IntEnum

from cgw_peer.natt import NAT_KEEPALIVE as NAT_KEEPALIVE  # one definition for both versions
from cgw_peer.natt import NON_ESP_MARKER as NON_ESP_MARKER

IKEV2_VERSION = 0x20
"""Major version 2, minor 0 (RFC 7296 §3.1)."""


class Exchange(IntEnum):
    IKE_SA_INIT = 34
    IKE_AUTH = 35
    CREATE_CHILD_SA = 36
    INFORMATIONAL = 37


class Flag(IntEnum):
    INITIATOR = 0x08
    """Set by the original initiator of the IKE SA (RFC 7296 §3.1)."""
    VERSION = 0x10
    RESPONSE = 0x20


class Payload(IntEnum):
    NONE = 0
    SA = 33
    KE = 34
    IDI = 35
    IDR = 36
    CERT = 37
    CERTREQ = 38
    AUTH = 39
    NONCE = 40
    NOTIFY = 41
    DELETE = 42
    VENDOR = 43
    TSI = 44
    TSR = 45
    SK = 46
    CP = 47
    EAP = 48
    SKF = 53


class Protocol(IntEnum):
    IKE = 1
    AH = 2
    ESP = 3


class TransformType(IntEnum):
    ENCR = 1
    PRF = 2
    INTEG = 3
    DH = 4
    ESN = 5


class Encr(IntEnum):
    AES_CBC = 12
    AES_GCM_16 = 20


class Prf(IntEnum):
    HMAC_SHA1 = 2
    HMAC_SHA2_256 = 5
    HMAC_SHA2_384 = 6
    HMAC_SHA2_512 = 7


class Integ(IntEnum):
    NONE = 0
    HMAC_SHA1_96 = 2
    HMAC_SHA2_256_128 = 12
    HMAC_SHA2_384_192 = 13
    HMAC_SHA2_512_256 = 14


ATTR_KEY_LENGTH = 14
"""Transform attribute type Key Length (TV format, RFC 7296 §3.3.5)."""


class IdType(IntEnum):
    IPV4_ADDR = 1
    FQDN = 2
    RFC822_ADDR = 3
    IPV6_ADDR = 5
    KEY_ID = 11


class AuthMethod(IntEnum):
    PSK = 2
    """Shared Key Message Integrity Code (RFC 7296 §3.8)."""


class TsType(IntEnum):
    IPV4_ADDR_RANGE = 7
    IPV6_ADDR_RANGE = 8


class Notify(IntEnum):
    UNSUPPORTED_CRITICAL_PAYLOAD = 1
    INVALID_IKE_SPI = 4
    INVALID_MAJOR_VERSION = 5
    INVALID_SYNTAX = 7
    INVALID_MESSAGE_ID = 9
    INVALID_SPI = 11
    NO_PROPOSAL_CHOSEN = 14
    INVALID_KE_PAYLOAD = 17
    AUTHENTICATION_FAILED = 24
    SINGLE_PAIR_REQUIRED = 34
    NO_ADDITIONAL_SAS = 35
    INTERNAL_ADDRESS_FAILURE = 36
    FAILED_CP_REQUIRED = 37
    TS_UNACCEPTABLE = 38
    INVALID_SELECTORS = 39
    TEMPORARY_FAILURE = 43
    CHILD_SA_NOT_FOUND = 44
    INITIAL_CONTACT = 16384
    SET_WINDOW_SIZE = 16385
    ADDITIONAL_TS_POSSIBLE = 16386
    IPCOMP_SUPPORTED = 16387
    NAT_DETECTION_SOURCE_IP = 16388
    NAT_DETECTION_DESTINATION_IP = 16389
    COOKIE = 16390
    USE_TRANSPORT_MODE = 16391
    REKEY_SA = 16393
    ESP_TFC_PADDING_NOT_SUPPORTED = 16394
    NON_FIRST_FRAGMENTS_ALSO = 16395


ERROR_NOTIFY_MAX = 16383
"""Notify types below 16384 are errors (RFC 7296 §3.10.1)."""
