"""IKEv1 engine policies in use: periodic DPD behind NAT, and the phase-2 IV the engine computes."""

from __future__ import annotations

import pytest

from cgw_peer.crypto.keymat_v1 import phase2_iv
from tests.ikev1.helpers import aws_config, cgw_config, make_net, times


def test_periodic_dpd_with_nat() -> None:
    """AWS: on-demand DPD without NAT, periodic DPD for peers using NAT (UDP encapsulation here)."""
    net, aws, _cgw = make_net(aws_config(), cgw_config(force_encap=True))
    net.start_all()
    for t in range(5, 50, 5):
        net.at(t, lambda t=t: aws.note_esp_inbound(float(t)))
    net.run_until(35)
    assert times(net, "dpd_request_sent", "aws") == [10.0, 20.0, 30.0]


@pytest.mark.parametrize("mid", [0, 1, 0xDEADBEEF, 0xFFFFFFFF])
def test_engine_phase2_iv_matches_keymat(mid: int) -> None:
    net, aws, _cgw = make_net()
    net.start_all()
    net.run_until(1)
    sa = aws.current_isakmp
    assert sa is not None
    assert aws._phase2_iv(sa, mid.to_bytes(4, "big")) == phase2_iv(sa.hash_name, sa.last_p1_block, mid)
