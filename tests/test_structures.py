"""Cluster structures: ASE <-> diffpy.structure, arrays, files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase.cluster import Icosahedron
from diffpy.structure import Lattice, Structure

from diffpy_deepstruc.elements import nearest_neighbour_distance
from diffpy_deepstruc.errors import (
    DeepStrucError,
    ElementError,
    OutputExistsError,
    StructureError,
)
from diffpy_deepstruc.structures import (
    arrays_to_structure,
    atoms_to_structure,
    has_unit_lattice,
    read_structure,
    structure_arrays,
    structure_to_atoms,
    write_structure,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def au55():
    """The 55-atom Au Mackay icosahedron, nearest neighbours at Au's bulk 2.885 A."""
    return Icosahedron(
        "Au", 3, latticeconstant=nearest_neighbour_distance("Au") * np.sqrt(2)
    )


def test_au55_round_trip(au55) -> None:
    s = atoms_to_structure(au55, uiso=0.007)
    assert len(s) == 55 and has_unit_lattice(s)
    assert s.title == "Au55"
    np.testing.assert_allclose(s.xyz, au55.positions, atol=1e-12)  # fractional == Cartesian
    np.testing.assert_allclose(s.Uisoequiv, 0.007)
    assert not any(s.anisotropy)
    back = structure_to_atoms(s)
    np.testing.assert_allclose(back.positions, au55.positions, atol=1e-12)
    assert back.get_chemical_symbols() == ["Au"] * 55
    assert not back.pbc.any()
    # known geometry: 12 nearest neighbours of the centre at the Au bulk distance
    d = np.linalg.norm(back.positions - back.positions[0], axis=1)
    assert np.sum(np.isclose(d, 2.885, atol=0.01)) == 12


def test_structure_arrays_normalises_elements() -> None:
    s = Structure(lattice=Lattice())
    s.addNewAtom("AU", xyz=[0, 0, 0], Uisoequiv=0.01)
    s.addNewAtom("Au1+", xyz=[2.88, 0, 0], Uisoequiv=0.02)
    xyz, elements, uiso = structure_arrays(s)
    assert elements == ["Au", "Au"]
    np.testing.assert_allclose(xyz[1], [2.88, 0, 0])
    np.testing.assert_allclose(uiso, [0.01, 0.02])


def test_structure_arrays_converts_periodic_lattice() -> None:
    s = Structure(lattice=Lattice(4.0, 4.0, 4.0, 90, 90, 90))
    s.addNewAtom("Cu", xyz=[0.5, 0.5, 0.0])
    xyz, _, _ = structure_arrays(s)
    np.testing.assert_allclose(xyz[0], [2.0, 2.0, 0.0])


def test_arrays_to_structure() -> None:
    s = arrays_to_structure(
        [[0, 0, 0], [1, 2, 3]], ["pt", "PD"], uiso=[0.004, 0.006], title="x"
    )
    assert has_unit_lattice(s) and s.title == "x"
    assert list(s.element) == ["Pt", "Pd"]
    np.testing.assert_allclose(s.xyz_cartn[1], [1, 2, 3])
    single = arrays_to_structure(np.zeros((3, 3)), "Ag")
    assert list(single.element) == ["Ag"] * 3
    np.testing.assert_allclose(single.Uisoequiv, 0.005)


@pytest.mark.parametrize(
    ("xyz", "elements", "uiso", "match"),
    [
        (np.zeros((0, 3)), [], 0.005, "no atoms"),
        (np.zeros((2, 2)), ["Au", "Au"], 0.005, "shape"),
        ([[0, 0, np.nan]], ["Au"], 0.005, "non-finite"),
        ([[0, 0, 0]], ["Au", "Au"], 0.005, "2 element symbols for 1 atoms"),
        ([[0, 0, 0]], ["Au"], -0.1, "uiso must be >= 0"),
        ([[0, 0, 0]], ["Au"], [0.1, 0.2], "uiso has shape"),
    ],
)
def test_arrays_to_structure_errors(xyz, elements, uiso, match) -> None:
    with pytest.raises(StructureError, match=match):
        arrays_to_structure(xyz, elements, uiso)


def test_unknown_element() -> None:
    with pytest.raises(ElementError, match="Qq"):
        arrays_to_structure([[0, 0, 0]], ["Qq"])


@pytest.mark.parametrize("ext", ["xyz", "stru", "cif", "pdb", "discus"])
def test_write_read_round_trip(tmp_path: Path, au55, ext: str) -> None:
    s = atoms_to_structure(au55, uiso=0.005)
    out = write_structure(s, tmp_path / f"au55.{ext}")
    assert out == tmp_path / f"au55.{ext}" and out.is_file()
    t = read_structure(out)
    assert has_unit_lattice(t)
    xyz, elements, uiso = structure_arrays(t)
    assert elements == ["Au"] * 55
    shift = (xyz - au55.positions).mean(axis=0)
    tol = {"xyz": 1e-9, "stru": 1e-7, "discus": 1e-7, "cif": 1e-4, "pdb": 1e-3}[ext]
    np.testing.assert_allclose(xyz - shift, au55.positions, atol=tol)
    if ext != "cif":  # CIF: the cluster is centred in a box; others keep positions
        np.testing.assert_allclose(shift, 0, atol=tol)
    expected_uiso = {"xyz": 0.0, "pdb": 0.005}.get(ext, 0.005)
    np.testing.assert_allclose(uiso, expected_uiso, atol=1e-4)


def test_read_shared_reference_xyz(srreal_dir: Path, au55) -> None:
    s = read_structure(srreal_dir / "Au55_icosahedron.xyz")
    xyz, elements, uiso = structure_arrays(s)
    assert elements == ["Au"] * 55
    np.testing.assert_allclose(xyz, au55.positions, atol=1e-8)
    np.testing.assert_allclose(uiso, 0.0)  # xyz files carry no Uiso


def test_read_bundled_example() -> None:
    path = REPO / "examples" / "data" / "Au55_icosahedron.xyz"
    if not path.is_file():
        pytest.skip("examples/data not present (installed package)")
    s = read_structure(path)
    assert len(s) == 55 and set(structure_arrays(s)[1]) == {"Au"}


def test_read_periodic_cif_converts_to_cartesian(tmp_path: Path) -> None:
    cif = tmp_path / "nacl.cif"
    cif.write_text(
        "data_NaCl\n_cell_length_a 5.64\n_cell_length_b 5.64\n_cell_length_c 5.64\n"
        "_cell_angle_alpha 90\n_cell_angle_beta 90\n_cell_angle_gamma 90\n"
        "_symmetry_space_group_name_H-M 'F m -3 m'\n"
        "loop_\n_atom_site_label\n_atom_site_type_symbol\n_atom_site_fract_x\n"
        "_atom_site_fract_y\n_atom_site_fract_z\n_atom_site_U_iso_or_equiv\n"
        "Na1 Na+ 0 0 0 0.01\nCl1 Cl- 0.5 0.5 0.5 0.012\n"
    )
    s = read_structure(cif)
    assert has_unit_lattice(s)
    xyz, elements, uiso = structure_arrays(s)
    assert elements.count("Na") == 4 and elements.count("Cl") == 4
    assert any(np.allclose(p, [0, 2.82, 2.82]) for p in xyz)  # face centre, Cartesian
    np.testing.assert_allclose(sorted(set(uiso)), [0.01, 0.012])


def test_write_refuses_overwrite(tmp_path: Path, au55) -> None:
    s = atoms_to_structure(au55)
    out = write_structure(s, tmp_path / "a.xyz")
    before = out.read_text()
    with pytest.raises(OutputExistsError, match="a.xyz"):
        write_structure(arrays_to_structure([[0, 0, 0]], ["Cu"]), out)
    assert out.read_text() == before
    write_structure(arrays_to_structure([[0, 0, 0]], ["Cu"]), out, overwrite=True)
    assert len(read_structure(out)) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["a.xyz"]  # no temporary left over


def test_write_errors(tmp_path: Path) -> None:
    s = arrays_to_structure([[0, 0, 0]], ["Cu"])
    with pytest.raises(StructureError, match="extension"):
        write_structure(s, tmp_path / "a.foo")
    with pytest.raises(StructureError, match="not supported"):
        write_structure(s, tmp_path / "a.xcfg")
    with pytest.raises(StructureError, match="no atoms"):
        write_structure(Structure(), tmp_path / "b.xyz")
    write_structure(s, tmp_path / "c.txt", fmt="xyz")
    assert len(read_structure(tmp_path / "c.txt", fmt="xyz")) == 1


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("missing.xyz", None, "file not found"),
        ("empty.xyz", "", "file is empty"),
        ("garbage.xyz", "hello\nworld\n", "cannot read as xyz"),
        ("count.xyz", "3\ntitle\nAu 0 0 0\n", "expected 3 atoms"),
        ("zero.xyz", "0\ntitle\n", "no atoms"),
        ("nan.xyz", "2\nt\nAu 0 0 0\nAu nan 0 0\n", "non-finite"),
        ("binary.xyz", b"\x00\xff\xfe\x89PNG\r\n", "cannot read"),
        ("bad.stru", "this is no pdffit file\n", "cannot read as pdffit"),
        ("bad.cif", "data_x\n_cell_length_a nonsense\n", "cannot read as cif"),
        ("bad.ext", "1\nt\nAu 0 0 0\n", "extension"),
    ],
)
def test_read_errors(tmp_path: Path, name: str, content, match: str) -> None:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(StructureError, match=match) as info:
        read_structure(path)
    assert str(path) in str(info.value)


def test_read_unknown_element(tmp_path: Path) -> None:
    path = tmp_path / "qq.xyz"
    path.write_text("1\nt\nQq 0 0 0\n")
    with pytest.raises(ElementError) as info:
        read_structure(path)
    assert str(path) in str(info.value) and "Qq" in str(info.value)
    assert isinstance(info.value, DeepStrucError)
