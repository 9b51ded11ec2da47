"""The AWS tunnel behaviour of one peer, composed: liveness, the DPD timeout action, restarts, status.

See :mod:`cgw_peer.lifecycle` for the model and its sources. An engine owns one :class:`Lifecycle` and calls it at
the points where the protocol says something happened; the wire work (building a probe, deleting SAs, starting
an exchange) stays in the engine.
"""

from __future__ import annotations

import random

from cgw_peer.config import DpdTimeoutAction, LivenessTraffic, PeerConfig, Role
from cgw_peer.events import aws_log, dpd_timeout
from cgw_peer.lifecycle.liveness import DeadRule, Liveness, dead_rule
from cgw_peer.lifecycle.restart import Restart
from cgw_peer.lifecycle.retransmit import RetransmitPolicy, policy_for
from cgw_peer.lifecycle.status import (
    LOG_IKEV1_PEER_DEAD,
    LOG_IKEV2_DPD_TIMEOUT,
    PhaseState,
    TunnelState,
    TunnelStatus,
)
from emulator.actions import Action


class Lifecycle:
    """Liveness, timeout action, restart and status of one side of one tunnel, for IKE version 1 or 2."""

    __slots__ = (
        "beh",
        "config",
        "liveness",
        "liveness_retransmit",
        "restart",
        "retransmit",
        "rng",
        "state",
        "version",
    )

    def __init__(self, config: PeerConfig, rng: random.Random, version: int) -> None:
        self.config = config
        self.beh = beh = config.behaviour
        self.rng = rng
        self.version = version
        rule = dead_rule(beh.liveness_model, version)
        self.liveness = Liveness(beh.dpd_delay, beh.dpd_interval, config.dpd_timeout, rule, repeat_probes=version == 1)
        self.restart = Restart()
        self.state = TunnelState()
        self.retransmit: RetransmitPolicy = policy_for(beh.retransmit)
        """Every request's retransmission schedule (``Behaviour.retransmit``)."""
        self.liveness_retransmit: RetransmitPolicy = (
            self.retransmit if rule is DeadRule.RETRANSMIT_BUDGET else RetransmitPolicy.fixed(beh.dpd_interval)
        )
        """IKEv2 liveness requests: AWS retransmits every ``dpd_interval`` until the DPD timeout decides;
        strongSwan and libreswan use the ordinary schedule and its budget decides."""

    @property
    def status(self) -> TunnelStatus:
        return self.state.status

    @property
    def up(self) -> bool:
        return self.state.up

    # -- liveness --------------------------------------------------------------------------------------------

    def esp_counts(self, natt: bool) -> bool:
        """Whether inbound ESP counts as liveness (``Behaviour.liveness_traffic``; strongSwan's ``get_use_time``
        counts ESP only with UDP encapsulation)."""
        lt = self.beh.liveness_traffic
        return lt is LivenessTraffic.IKE_ESP or (lt is LivenessTraffic.IKE_ESP_NAT and natt)

    def may_probe(self, rekeying: bool) -> bool:
        """Whether a due probe may go out now (strongSwan skips IKEv1 DPD on SAs being rekeyed)."""
        return self.beh.dpd_during_rekey or not rekeying

    def periodic(self, natt: bool) -> bool:
        """AWS: "on-demand DPD for peers that are not using NAT, and periodic DPDs for peers using NAT"."""
        return self.beh.periodic_dpd_with_nat and natt

    # -- the DPD timeout ---------------------------------------------------------------------------------------

    def dpd_timeout(self, now: float, out: list[Action]) -> DpdTimeoutAction:
        """The liveness model declared the peer dead at ``now``. Appends ``dpd_timeout`` (and the AWS log line)
        and returns the action the engine carries out: CLEAR (tear down, wait), RESTART (tear down, then
        :meth:`schedule_restart`) or NONE (keep everything, keep probing). The action reported is the one that
        happens: ``restart`` under IKEv1 on the AWS side without ``restart_ikev1`` is a ``clear``."""
        live = self.liveness
        beh = self.beh
        action = self.config.options.dpd_timeout_action
        aws = self.config.role is Role.AWS
        if action is DpdTimeoutAction.RESTART and self.version == 1 and aws and not beh.restart_ikev1:
            action = DpdTimeoutAction.CLEAR
        retransmits = live.probes - 1 if live.probes > 0 else 0
        out.append(
            dpd_timeout(
                action=action.value,
                last_inbound=live.last_inbound_at,
                model=str(beh.liveness_model),
                probes=live.probes,
                retransmits=retransmits,
            )
        )
        if aws:
            # AWS logs a different line per version (ike-dpd.md §1.2, A-LOG).
            if self.version == 1:
                out.append(aws_log(message=LOG_IKEV1_PEER_DEAD))
            else:
                out.append(aws_log(message=LOG_IKEV2_DPD_TIMEOUT.format(retry_count=retransmits)))
        live.mark_dead()
        if action is not DpdTimeoutAction.NONE:
            self.state.cause("dpd_timeout")
            if action is DpdTimeoutAction.RESTART:
                self.restart.restarting = True
        return action

    # -- restarts -----------------------------------------------------------------------------------------------

    def schedule_restart(self, now: float, out: list[Action]) -> None:
        """Initiate again after the backoff (DPDTimeoutAction=restart, after the teardown)."""
        ev = self.restart.schedule(now, self.beh, self.rng)
        if ev is not None:
            out.append(ev)

    def negotiation_failed(self, now: float, out: list[Action]) -> None:
        """A negotiation we initiated to bring the tunnel up failed (given up, or refused). Retry with the
        backoff when this side is the one bringing the tunnel up (``Behaviour.retry_initiation``)."""
        r = self.restart
        if r.closed or not self.beh.retry_initiation:
            return
        if r.restarting or self.config.initiates_at_startup:
            r.restarting = True
            self.schedule_restart(now, out)

    def close(self) -> None:
        self.restart.close()
        self.liveness.stop()

    def reopen(self) -> None:
        """``initiate()`` after ``close()``."""
        self.restart.closed = False

    # -- status -------------------------------------------------------------------------------------------------

    def settle(
        self, now: float, up: bool, phase1: PhaseState, phase2: PhaseState, reason: str, out: list[Action]
    ) -> None:
        """The engine's SAs may have changed: update the status; emit the UP/DOWN transition if there is one."""
        if self.state.settle(now, up, phase1, phase2, reason, out) and up:
            self.restart.on_up()
