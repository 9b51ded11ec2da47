"""IKEv2 (RFC 7296) in the sans-I/O engine: codec, SK payload protection, SA state and :class:`IkeV2Peer`.

Import :class:`cgw_peer.ikev2.peer.IkeV2Peer` directly (or through ``cgw_peer.peer.create_peer``); this
package ``__init__`` stays empty of imports so that the codec can be used without the crypto stack.
"""
