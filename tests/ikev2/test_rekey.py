"""CREATE_CHILD_SA: Child and IKE rekeys (with PFS), simultaneous rekey resolved by the lowest nonce
(RFC 7296 §2.8.1), a CREATE_CHILD_SA response overtaken by a Delete (strongSwan #1458), rekeys while
liveness checks run (virtual time)."""

from __future__ import annotations

from cgw_peer.config import Behaviour, Role
from cgw_peer.ikev2 import codec
from cgw_peer.ikev2.constants import Exchange
from cgw_peer.ikev2.peer import IkeV2Peer
from emulator.actions import Action, Transmit, events, transmits
from emulator.simnet import SimNetwork

from .helpers import AWS_ADDR, CGW_ADDR, config, converse, deliver, establish, names, options, pair


def pairs(a: IkeV2Peer, b: IkeV2Peer) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """The live Child SA pairs (in, out) on each side, as seen from A's orientation."""
    la = {(c.spi_in.hex(), c.spi_out.hex()) for c in a.child_sas() if c.replaced_by is None and not c.deleted}
    lb = {(c.spi_out.hex(), c.spi_in.hex()) for c in b.child_sas() if c.replaced_by is None and not c.deleted}
    return la, lb


def test_child_rekey_with_pfs() -> None:
    aws, cgw = pair()
    establish(aws, cgw)
    old_in = aws.child_sas()[0].spi_in
    log = converse(aws, cgw, aws.rekey_child(100.0), 100.0)
    kinds = [x.kind for _, x in log if isinstance(x, Transmit)]
    assert kinds == ["create_child_sa_request", "create_child_sa_response", "delete_request", "delete_response"]
    assert "AWS tunnel is sending request (id=0) for CREATE_CHILD_SA" in [
        x.fields["message"] for _, x in log if getattr(x, "name", "") == "aws_log"
    ]
    new = [c for c in aws.child_sas()]
    assert len(new) == 1 and new[0].spi_in != old_in and new[0].suite.dh == 19  # PFS group from Phase2DHGroupNumbers
    la, lb = pairs(aws, cgw)
    assert la == lb and len(la) == 1
    assert len(cgw.child_sas()) == 1
    # Both sides derived the same ESP keys in opposite directions.
    a, c = aws.child_sas()[0], cgw.child_sas()[0]
    assert a.keys["enc_out"] == c.keys["enc_in"] and a.keys["integ_in"] == c.keys["integ_out"]


def test_ike_rekey_moves_children_and_restarts_message_ids() -> None:
    aws, cgw = pair()
    establish(aws, cgw)
    converse(aws, cgw, aws.check_liveness(1.0), 1.0)
    old = aws.ike_sa()
    assert old is not None and old.my_mid == 1
    log = converse(cgw, aws, cgw.rekey_ike(50.0), 50.0)
    assert "rekey_done" in names(log, "a") and "rekey_done" in names(log, "b")
    new_a, new_c = aws.ike_sa(), cgw.ike_sa()
    assert new_a is not None and new_c is not None and new_a is not old
    assert (new_a.spi_i, new_a.spi_r) == (new_c.spi_i, new_c.spi_r)
    assert new_c.initiator and not new_a.initiator  # the rekey initiator is the new SA's initiator (§2.18)
    assert len(aws.child_sas()) == 1 and len(aws.ike_spis()) == 2  # old SA deleted
    # Message IDs restart at 0 on the new SA.
    (tx,) = transmits(aws.check_liveness(51.0))
    assert codec.parse_header(tx.data).message_id == 0
    assert names([("x", y) for y in deliver([tx], cgw, 51.0)]) == ["dpd_request_received", "dpd_ack_sent"]
    assert sum(1 for e in events([x for _, x in log], "sa_keys")) == 2


def _simultaneous(seed: int) -> tuple[IkeV2Peer, IkeV2Peer, list[Action], list[Action], str]:
    aws, cgw = pair(seed=seed)
    establish(aws, cgw)
    old = aws.child_sas()[0]
    a_req = aws.rekey_child(200.0)
    c_req = cgw.rekey_child(200.0)
    a_resp = deliver(c_req, aws, 200.0)  # AWS answers the CGW's rekey
    c_resp = deliver(a_req, cgw, 200.0)  # and vice versa
    a_after = deliver(c_resp, aws, 200.01)
    c_after = deliver(a_resp, cgw, 200.01)
    # Independent oracle: of the two new SAs, the survivor is the one not holding the lowest nonce.
    new = [c for c in aws.child_sas() if c is not old]
    assert len(new) == 2
    survivor = max(new, key=lambda c: min(c.ni, c.nr)).spi_in.hex()
    # Run the Deletes that follow to completion.
    converse(aws, cgw, a_after, 200.02)
    converse(cgw, aws, c_after, 200.02)
    return aws, cgw, a_after, c_after, survivor


def test_simultaneous_child_rekey_resolved_by_lowest_nonce() -> None:
    """Both sides rekey the same Child SA at once. Each ends up with two new SAs; the one holding the lowest
    of the four nonces is deleted by its creator, and both sides agree on the survivor."""
    outcomes = set()
    for seed in range(1, 9):
        aws, cgw, a_after, c_after, survivor = _simultaneous(seed)
        la, lb = pairs(aws, cgw)
        assert la == lb and len(la) == 1, seed
        assert len(aws.child_sas()) == 1 and len(cgw.child_sas()) == 1
        a_coll = [e for e in events(a_after, "rekey_collision")]
        c_coll = [e for e in events(c_after, "rekey_collision")]
        assert len(a_coll) == 1 and len(c_coll) == 1
        assert a_coll[0].fields["ours_redundant"] != c_coll[0].fields["ours_redundant"]
        logs = [e.fields["message"] for e in events(a_after, "aws_log")]
        if a_coll[0].fields["ours_redundant"]:
            outcomes.add("aws_deleted_its_own")
            assert "AWS tunnel (CHILD_SA) redundant SA is being deleted due to detected collision" in logs
        else:
            outcomes.add("cgw_deleted_its_own")
        (surv,) = aws.child_sas()
        assert surv.spi_in.hex() == survivor
    assert outcomes == {"aws_deleted_its_own", "cgw_deleted_its_own"}


def test_create_child_response_overtaken_by_delete() -> None:
    """AWS rekeys; the CGW answers, then deletes the old SA itself; the Delete reaches AWS before the
    CREATE_CHILD_SA response. AWS logs the collision, answers the Delete, then installs the new SA."""
    aws, cgw = pair()
    establish(aws, cgw)
    old_aws = aws.child_sas()[0]
    req = aws.rekey_child(300.0)
    resp = deliver(req, cgw, 300.0)
    old_cgw = next(c for c in cgw.child_sas() if c.spi_in == old_aws.spi_out)
    delete = cgw.delete_child(300.0, old_cgw.spi_in)
    assert [t.kind for t in transmits(delete)] == ["delete_request"]
    got_delete = deliver(delete, aws, 300.0004)  # first: the Delete
    msgs = [e.fields["message"] for e in events(got_delete, "aws_log")]
    assert msgs == ["AWS tunnel detected a (CHILD_REKEY) collision as CHILD_DELETE"]
    (ans,) = transmits(got_delete)
    assert ans.kind == "delete_response"
    deliver([ans], cgw, 300.0005)
    got_resp = deliver(resp, aws, 300.0006)  # then the overtaken response
    assert "rekey_done" in [e.name for e in events(got_resp)]
    assert transmits(got_resp) == []  # no Delete for the old SA: it is already gone
    la, lb = pairs(aws, cgw)
    assert la == lb and len(la) == 1
    assert aws.status.status.value == "UP" and cgw.status.status.value == "UP"
    assert aws.counters["child_rekey_delete_collision"] == 1


def test_rekeys_while_liveness_runs_virtual_time() -> None:
    """Short lifetimes: Child rekeys and IKE rekeys happen at the scheduled instants, liveness checks keep
    going on whichever IKE SA is current, and the tunnel never goes down."""
    opts = options(
        phase1_lifetime_seconds=1800,
        phase2_lifetime_seconds=900,
        rekey_margin_time_seconds=120,
        rekey_fuzz_percentage=0,
    )
    aws, cgw = pair(
        config(Role.AWS, opts), config(Role.CGW, opts, behaviour=Behaviour(rekey_initiator=False, dpd_delay=15.0))
    )
    net = SimNetwork(seed=3)
    net.add_node("aws", aws, [AWS_ADDR[0]])
    net.add_node("cgw", cgw, [CGW_ADDR[0]])
    net.start_all()
    net.run_until(3700)
    child_rekeys = [r.t for r in net.trace.select("rekey_done", node="aws", sa="child")]
    ike_rekeys = [r.t for r in net.trace.select("rekey_done", node="aws", sa="ike")]
    # Child: 900 - 120 = 780 s after each Child SA; IKE: 1800 - 120 = 1680 s after each IKE SA.
    assert child_rekeys == [780.0, 1560.0, 2340.0, 3120.0]
    assert ike_rekeys == [1680.0, 3360.0]
    assert net.trace.select("tunnel_down") == []
    assert net.trace.select("dpd_timeout") == []
    acks = [r.t for r in net.trace.select("dpd_ack_received", node="aws")]
    assert any(1680 < t < 1700 for t in acks) and any(t > 3360 for t in acks)
    assert len(aws.ike_spis()) == 2 and len(cgw.ike_spis()) == 2
    assert len(aws.child_sas()) == 1 and len(cgw.child_sas()) == 1
    assert aws.status.status.value == "UP"
    # Every datagram AWS received was accepted.
    assert not any(k.startswith("dropped:") for k in aws.counters)
    assert not any(k.startswith("dropped:") for k in cgw.counters)


def test_exchange_types_seen() -> None:
    aws, cgw = pair()
    log = establish(aws, cgw)
    ex = [codec.parse_header(x.data).exchange for _, x in log if isinstance(x, Transmit)]
    assert ex == [Exchange.IKE_SA_INIT] * 2 + [Exchange.IKE_AUTH] * 2


def test_simultaneous_ike_rekey_resolved_by_lowest_nonce() -> None:
    """Both sides rekey the IKE SA at once (§2.8.1): both new SAs are created; the one with the lowest nonce is
    deleted by its creator, the other creator deletes the old SA; one IKE SA remains on each side, the same one,
    carrying the Child SA, and liveness works on it."""
    outcomes = set()
    for seed in range(1, 9):
        aws, cgw = pair(seed=seed)
        establish(aws, cgw)
        a_req, c_req = aws.rekey_ike(500.0), cgw.rekey_ike(500.0)
        a_resp = deliver(c_req, aws, 500.0)
        c_resp = deliver(a_req, cgw, 500.0)
        a_after = deliver(c_resp, aws, 500.01)
        c_after = deliver(a_resp, cgw, 500.01)
        converse(aws, cgw, a_after, 500.02)
        converse(cgw, aws, c_after, 500.02)
        a_coll = [e for e in events(a_after, "rekey_collision") if "ours_redundant" in e.fields]
        c_coll = [e for e in events(c_after, "rekey_collision") if "ours_redundant" in e.fields]
        assert len(a_coll) == 1 and len(c_coll) == 1
        assert a_coll[0].fields["ours_redundant"] != c_coll[0].fields["ours_redundant"]
        outcomes.add(a_coll[0].fields["ours_redundant"])
        sa_a, sa_c = aws.ike_sa(), cgw.ike_sa()
        assert sa_a is not None and sa_c is not None
        assert (sa_a.spi_i, sa_a.spi_r) == (sa_c.spi_i, sa_c.spi_r)
        assert len(aws.ike_spis()) == 2 and len(cgw.ike_spis()) == 2  # exactly one IKE SA each
        assert len(aws.child_sas()) == 1 and len(cgw.child_sas()) == 1
        log = converse(aws, cgw, aws.check_liveness(501.0), 501.0)
        assert "dpd_ack_received" in names(log, "a")
    assert outcomes == {True, False}
