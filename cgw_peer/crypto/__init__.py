"""IKE crypto layer: pure functions and small objects, no I/O (sans-I/O; randomness is injected).

Modules: :mod:`.prf` (HMAC PRFs, hashes, truncated MACs), :mod:`.cipher` (AES-CBC, AES-GCM-16), :mod:`.dh`
(MODP/ECP/Curve25519 groups), :mod:`.keymat_v1` (RFC 2409), :mod:`.keymat_v2` (RFC 7296), :mod:`.algorithms`
(name and ID tables, proposal parser). Import from the submodules; this package re-exports nothing so that
importing one piece stays cheap.
"""
