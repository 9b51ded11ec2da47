"""IKEv2 (RFC 7296) in the sans-I/O engine: codec, SK payload protection, proposals, SA state and the peer.

Public entry point: :class:`cgw_peer.ikev2.peer.IkeV2Peer` (usually through ``cgw_peer.peer.create_peer`` with
``PeerConfig.ike_version = ikev2``). Besides the common :class:`~cgw_peer.peer.IkePeer` interface (``start``,
``initiate``, ``receive_datagram``, ``next_deadline``, ``handle_timer``, ``close``, ``note_esp_inbound``,
``status``, ``counters``, ``ike_spis``) it offers ``rekey_child``, ``rekey_ike``, ``delete_child``,
``check_liveness``, ``child_sas`` and ``ike_sa`` for scenarios and tests.

Modules: :mod:`.constants` (wire numbers), :mod:`.codec` (header, payload chain, SA/KE/ID/AUTH/N/D/TS),
:mod:`.suite` (negotiated algorithms, SK protect/unprotect), :mod:`.proposals` (offers from AWS tunnel options
or strongSwan proposal strings; AWS-style selection), :mod:`.peer` (exchanges, windows, timers, policies).
This ``__init__`` imports nothing, so the codec can be used without the crypto stack.
"""
