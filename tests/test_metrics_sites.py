"""The registration metric of the off-catalog benchmarks."""

import numpy as np
from ase.cluster import Icosahedron, Octahedron
from scipy.spatial.transform import Rotation

from diffpy_deepstruc.metrics import sites_matched


def test_a_rotated_shuffled_copy_matches_every_site():
    xyz = Octahedron("Cu", 5, 1).get_positions()
    rot = Rotation.from_euler("xyz", [0.3, 1.1, -0.7]).as_matrix()
    moved = xyz[np.random.default_rng(0).permutation(len(xyz))] @ rot.T + [5.0, -2.0, 1.0]
    assert sites_matched(moved, xyz, nn=2.55) == 1.0


def test_missing_atoms_are_counted_against_the_result():
    xyz = Icosahedron("Au", 3).get_positions()
    assert sites_matched(xyz[:-5], xyz, nn=2.88) == (len(xyz) - 5) / len(xyz)
    # extra atoms in the result cost nothing: every true site is still matched
    assert sites_matched(xyz, xyz[:-5], nn=2.88) == 1.0


def test_a_different_structure_does_not_match():
    ico = Icosahedron("Au", 3).get_positions()
    octa = Octahedron("Au", 5, 1).get_positions()
    assert sites_matched(octa, ico, nn=2.88) < 0.8


def test_a_partial_decahedron_is_registered_in_any_orientation():
    """Five-fold particles with a missing cap: fixed and random starting orientations
    can all fall into a wrong registration (the case that undercounted the completion
    benchmark's partial shells); the local-frame placements find the right one, for
    proper rotations and reflections alike."""
    from ase.cluster import Decahedron

    full = Decahedron("Ni", 3, 2, 0).get_positions()
    full -= full.mean(0)
    keep = np.argsort(full @ np.array([0.3, 0.5, 0.81]), kind="stable")[:-20]
    truth = full[keep]  # a cap of 20 atoms missing
    rng = np.random.default_rng(4)
    for k in range(4):
        rot = Rotation.random(random_state=10 + k).as_matrix()
        if k % 2:
            rot = rot @ np.diag([1.0, 1.0, -1.0])  # a mirror image
        moved = truth[rng.permutation(len(truth))] @ rot.T + rng.normal(0, 3, 3)
        assert sites_matched(moved, truth, nn=2.49, n_random=0) == 1.0
