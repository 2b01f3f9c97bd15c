"""Which of several same-named networks the project keeps, what the plan says of the others, and which
networks of a name count as a create's twins."""

from __future__ import annotations

from reconciler.drivers.network import duplicates
from reconciler.model import Action

A, B, C = "a" * 64, "b" * 64, "c" * 64


def net(net_id: str, *containers: str, name: str = "web", scope: str = "local", project: str = "p") -> dict:
    return {
        "Id": net_id,
        "Name": name,
        "Scope": scope,
        "Labels": {"io.reconciler.project": project},
        "Containers": {c * 64: {"Name": f"ctr-{c}"} for c in containers},
    }


def test_the_network_most_containers_are_on_is_kept_then_the_lowest_id():
    kept, dups = duplicates.split([net(A), net(B, "1", "2"), net(C, "3")])
    assert kept["Id"] == B and dups.ids == [C, A]
    kept, dups = duplicates.split([net(C), net(A), net(B)])
    assert kept["Id"] == A and dups.ids == [B, C]


def test_the_plan_names_every_network_and_moves_each_container_before_its_removal():
    _, dups = duplicates.split([net(A, "1"), net(B, "3", "2")])
    field = duplicates.field(dups)
    assert (field.path, field.old, field.new, field.action) == ("duplicates", [A[:12], B[:12]], [B[:12]], Action.UPDATE)
    steps = duplicates.steps(dups)
    assert list(steps) == [
        f"move container ctr-1 from duplicate network {A[:12]} to {B[:12]}",
        f"remove duplicate network {A[:12]}",
    ]
    assert [(s.op, s.args) for s in steps] == [("move_off_duplicate", (A, "1" * 64)), ("remove_duplicate", (A,))]


def test_twins_are_the_projects_networks_of_the_exact_name_in_the_same_scope():
    listed = [
        net(A),
        net(B),
        net(C, name="web-2"),  # the list filter matches a part of the name
        net("d" * 64, project="other"),
        net("e" * 64, scope="swarm"),
    ]
    assert duplicates.others_of(listed, "web", A, ("io.reconciler.project", "p")) == [B]
    assert duplicates.others_of(listed, "web", "z" * 64, ("io.reconciler.project", "p")) == []
