"""Tunnel status as AWS shows it, and the AWS log lines (version-agnostic: IKEv1 and IKEv2 both use it).

AWS ``VgwTelemetry`` per tunnel: ``Status`` UP|DOWN, ``StatusMessage`` (free text; ``IPSEC IS UP`` /
``IPSEC IS DOWN`` appear in real describe-vpn-connections output), ``LastStatusChange`` ("updated when changes
in IKE (Phase 1), IPSec (Phase 2), or BGP status are detected"). The tunnel activity log has
``TunnelIKEPhase1State`` / ``TunnelIKEPhase2State``, each Established|Rekeying|Negotiating|Down
(``ike-dpd.md`` §1.5).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    UP = "UP"
    DOWN = "DOWN"


class PhaseState(StrEnum):
    """``TunnelIKEPhase1State`` / ``TunnelIKEPhase2State`` of the AWS tunnel activity log."""

    ESTABLISHED = "Established"
    REKEYING = "Rekeying"
    NEGOTIATING = "Negotiating"
    DOWN = "Down"


MSG_UP = "IPSEC IS UP"
MSG_DOWN = "IPSEC IS DOWN"

# AWS tunnel activity log lines (A-LOG, ike-dpd.md §1.2 and §1.5), reproduced verbatim.
LOG_IKEV1_PEER_DEAD = "Peer is not responsive - Declaring peer dead"
LOG_IKEV2_DPD_TIMEOUT = "AWS tunnel DPD timed out after {retry_count} retransmits"
LOG_DELETE_IKE_SA_FROM_CGW = "AWS tunnel received DELETE for IKE_SA from CGW"
LOG_CHILD_REKEY_COLLISION = "AWS tunnel detected a (CHILD_REKEY) collision as CHILD_DELETE"
LOG_REDUNDANT_CHILD_SA = "AWS tunnel (CHILD_SA) redundant SA is being deleted due to detected collision"
LOG_SENDING_CREATE_CHILD_SA = "AWS tunnel is sending request (id={id}) for CREATE_CHILD_SA"


@dataclass(slots=True)
class TunnelStatus:
    """What ``describe-vpn-connections`` (VgwTelemetry) and the tunnel log show for one tunnel."""

    status: Status = Status.DOWN
    status_message: str = MSG_DOWN
    last_status_change: float = 0.0
    """Virtual (or driver) time of the last change of status or of either phase state."""
    phase1_state: PhaseState = PhaseState.DOWN
    phase2_state: PhaseState = PhaseState.DOWN

    def update(self, now: float, *, up: bool, phase1: PhaseState, phase2: PhaseState) -> bool:
        """Apply a new state; returns True when something changed (and stamps ``last_status_change``)."""
        status = Status.UP if up else Status.DOWN
        if status == self.status and phase1 == self.phase1_state and phase2 == self.phase2_state:
            return False
        self.status = status
        self.status_message = MSG_UP if up else MSG_DOWN
        self.phase1_state = phase1
        self.phase2_state = phase2
        self.last_status_change = now
        return True

    def to_aws(self) -> dict[str, object]:
        """VgwTelemetry-shaped mapping (times as virtual seconds)."""
        return {
            "Status": self.status.value,
            "StatusMessage": self.status_message,
            "LastStatusChange": self.last_status_change,
            "TunnelIKEPhase1State": self.phase1_state.value,
            "TunnelIKEPhase2State": self.phase2_state.value,
        }
