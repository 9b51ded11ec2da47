"""The AWS tunnel lifecycle: how an AWS Site-to-Site VPN endpoint decides a peer is dead, and what follows.

This package is where a newcomer learns what the product emulates. Both IKE engines (``cgw_peer/ikev1``,
``cgw_peer/ikev2``) use it; what stays in them is the wire exchanges (building and parsing messages, keys,
message IDs). Sources are tagged as in ``../shared/reference/ike-dpd.md`` (A-KC: the AWS knowledge-center
article on DPD; A-MOD/A-UG: the tunnel options reference and user guide; A-INIT: initiating tunnels; A-LOG:
the tunnel activity log; R3706, R7296: the RFCs; SW, LS: strongSwan and libreswan code).

Theory of operation
-------------------

**Liveness** (:mod:`.liveness`). Let ``t0`` be the instant the last *authenticated* inbound message arrived
(an IKE message that decrypted and verified; inbound ESP too where ``Behaviour.liveness_traffic`` says so; never
a NAT keepalive, never anything unauthenticated: R7296 §2.4). AWS (A-KC, A-MOD)::

    "If AWS receives no traffic from a VPN peer for 10 seconds, AWS sends a DPD R-U-THERE"
    "If the VPN peer does not respond to three successive DPDs, the VPN peer is considered dead"
    "A DPD timeout of 40 seconds means that the VPN endpoint will consider the peer dead 30 seconds after
     the first failed keep-alive"

All three hold with: probes at ``t0 + dpd_delay``, then every ``dpd_interval`` while the peer stays silent, and
dead at ``t0 + DPDTimeoutSeconds``. Dead wins over a probe due at the same instant. A peer that is merely idle is
never declared dead without being asked: the dead instant is armed only while a probe is unanswered. Any
authenticated message restarts the cycle (on-demand DPD); behind NAT, AWS probes every ``dpd_interval``
whatever arrives ("periodic DPDs for peers using NAT", A-KC; ``Behaviour.periodic_dpd_with_nat``).

``Behaviour.liveness_model`` picks whose timing a side reproduces. The probe schedule is the same for all; the
dead rule differs:

=============  ===============================================  =====================================================
model          IKEv1 (R-U-THERE, RFC 3706)                      IKEv2 (empty INFORMATIONAL request, RFC 7296 §1.4)
=============  ===============================================  =====================================================
``aws``        dead at t0 + timeout                             dead at t0 + timeout; the request is retransmitted
                                                                every ``dpd_interval`` meanwhile
``strongswan`` dead at t0 + ``dpd_timeout`` (SW ike_sa.c,       dead when the request's ``retransmit`` schedule is
               dpd_timeout_job.c)                               spent (4 s * 1.8**n, 5 tries: about 165 s)
``libreswan``  dead at the first unanswered probe +             dead when the ``retransmit`` budget is spent (60 s,
               ``dpdtimeout`` (LS ikev1_dpd.c)                  "any retransmit timeout implies the IKE SA is dead")
=============  ===============================================  =====================================================

The timeout is ``DPDTimeoutSeconds`` on the AWS side and ``Behaviour.dpd_timeout`` (if set) on a CGW.

**The one difference between the versions on the wire** is how a probe is repeated: IKEv1 sends a new R-U-THERE
(its own exchange with a fresh message ID, R2409 §5.7) every ``dpd_interval``; IKEv2 retransmits the one
request, bitwise identical with the same message ID (R7296 §2.1), on its retransmission schedule. That is why
AWS logs "Peer is not responsive - Declaring peer dead" for IKEv1 and "AWS tunnel DPD timed out after N
retransmits" for IKEv2 (A-LOG). In IKEv2 any request of ours on an established IKE SA is a probe (a window of
one: no liveness check goes out while another exchange is outstanding, SW ike_dpd.c), so an unanswered rekey
or Delete leads to the same verdict.

**The DPD timeout action** (:meth:`.tunnel.Lifecycle.dpd_timeout`), AWS ``DPDTimeoutAction``:

* ``clear`` (default): "the IKE session is stopped, the tunnel goes down, and the routes are removed" (A-INIT).
  Every SA is dropped; Deletes are sent only with ``Behaviour.send_delete_on_clear`` (AWS does not say; the
  peer is presumed dead, so the default is no). Then we wait for the peer.
* ``restart``: tear down as ``clear``, then initiate again after a backoff (below). AWS documents AWS-side
  initiation for IKEv2 only (A-INIT); ``Behaviour.restart_ikev1`` (default on) decides whether the AWS side
  re-initiates IKEv1; without it the action reported and carried out is ``clear``.
* ``none``: "Take no action" (A-UG): the SAs and the UP status stay. AWS does not say what is reported while
  the peer stays silent; here the ``dpd_timeout`` event is reported **once per silence** (not again until an
  authenticated message arrives: one outage, one line in the log) and probing goes on at ``dpd_interval``
  (IKEv1: new R-U-THEREs; IKEv2: the outstanding request is retransmitted every ``dpd_interval`` with its
  message ID, which must stay in sequence, R7296 §2.2), so that a returning peer is recognised at once.

**Restarts** (:mod:`.restart`). Attempts count from 1 after the tunnel was last UP. The delay before attempt n
is ``min(restart_backoff_max, restart_backoff_initial * 2**(n-1))``, shortened by up to
``restart_backoff_jitter`` at random: two sides restarting at the same instant (AWS restart and a CGW with
``dpdaction=restart``) do not collide again, and a dead peer is not stormed (SW issue #292). While restarting,
and on a side that initiates at start-up (a CGW; AWS with ``StartupAction=start``), a failed negotiation is
retried with the same backoff (``Behaviour.retry_initiation``). ``close()`` stops all of it.

**Status** (:mod:`.status`). ``Status`` is UP while an IPsec SA pair / Child SA is installed (VgwTelemetry,
A-VGW). :class:`.status.TunnelState` is the one place that emits ``tunnel_up``, ``tunnel_down(reason)`` and
``routes_withdrawn(reason)``, exactly once per transition, and keeps the status in agreement with them.

**Retransmission** (:mod:`.retransmit`): one schedule for every request of both versions, with
``Behaviour.retransmit``'s timeout, base, tries, limit, jitter and budget.

**Rekeys** (:mod:`.rekey`): the rekey instant (strongSwan's formula behind ``RekeyMarginTimeSeconds`` and
``RekeyFuzzPercentage``) and the collision rule: of two SAs created at once by both sides, the one holding the
lowest of the four nonces is closed by its creator (R7296 §2.8.1).

Every event named here is declared in :mod:`cgw_peer.events`.
"""

from __future__ import annotations

from cgw_peer.lifecycle.liveness import DEAD, IDLE, PROBE, DeadRule, Liveness, dead_rule
from cgw_peer.lifecycle.rekey import redundant, rekey_delay
from cgw_peer.lifecycle.restart import Restart, backoff_delay
from cgw_peer.lifecycle.retransmit import Retransmission, RetransmitPolicy, policy_for
from cgw_peer.lifecycle.status import PhaseState, Status, TunnelState, TunnelStatus
from cgw_peer.lifecycle.tunnel import Lifecycle

__all__ = [
    "DEAD",
    "IDLE",
    "PROBE",
    "DeadRule",
    "Lifecycle",
    "Liveness",
    "PhaseState",
    "Restart",
    "Retransmission",
    "RetransmitPolicy",
    "Status",
    "TunnelState",
    "TunnelStatus",
    "backoff_delay",
    "dead_rule",
    "policy_for",
    "redundant",
    "rekey_delay",
]
