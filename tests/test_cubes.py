"""`.pt` time-series cubes read without torch; malicious pickles refused without running."""

import os
import pickle
import struct
import zipfile

import numpy as np
import pytest

from geoplant_qgis.core.errors import InputDataError
from geoplant_qgis.core.geoplant.cubes import read_cube

pytestmark = pytest.mark.core

GLC24_CUBES = "glc24/TimeSeries-Cubes"
BIOCLIM = (
    f"{GLC24_CUBES}/GLC24-PA-train-bioclimatic_monthly/GLC24-PA-train-bioclimatic_monthly_1322301_cube.pt"
)
LANDSAT = (
    f"{GLC24_CUBES}/GLC24-PA-train-landsat_time_series/GLC24-PA-train-landsat-time-series_1322301_cube.pt"
)
GLC25_BIOCLIM = "glc25/BioclimTimeSeries/cubes/PA-test/GLC25-PA-test-bioclimatic_monthly_5000108_cube.pt"
GLC25_LANDSAT = (
    "glc25/SateliteTimeSeries-Landsat/cubes/PA-test/GLC25-PA-test-landsat_time_series_5000108_cube.pt"
)


def raw_storage(path):
    """The archive's raw float32 storage, read independently of the reader."""
    with zipfile.ZipFile(path) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith("/data/0")]
        return np.frombuffer(archive.read(name), dtype="<f4")


def test_bioclimatic_cube_values(samples_dir):
    for rel in (BIOCLIM, GLC25_BIOCLIM):
        cube = read_cube(samples_dir / rel)
        assert cube.shape == (4, 19, 12) and cube.dtype == np.float32
        # the sample stores it with strides (1, 48, 4): element [v, y, m] = flat[v + 48 y + 4 m]
        flat = raw_storage(samples_dir / rel)
        np.testing.assert_array_equal(cube, flat.reshape(19, 12, 4).transpose(2, 0, 1))
        assert np.isfinite(cube).all()
        # temperatures in 0.1 K (CHELSA): mean between min and max, all between -70 and +55 C
        tas, tasmax, tasmin = cube[1], cube[2], cube[3]
        assert ((tasmin <= tas) & (tas <= tasmax)).all()
        assert ((tasmin > 2030) & (tasmax < 3280)).all()
        assert (cube[0] >= 0).all()  # precipitation
    cube = read_cube(samples_dir / BIOCLIM)
    assert cube[:, 0, 0].tolist() == [5169.0, 2773.0, 2791.0, 2750.0]


def test_landsat_cube_values(samples_dir):
    for rel in (LANDSAT, GLC25_LANDSAT):
        cube = read_cube(samples_dir / rel)
        assert cube.shape == (6, 4, 21) and cube.dtype == np.float32
        # strides (84, 1, 4): element [b, q, y] = flat[84 b + q + 4 y]
        flat = raw_storage(samples_dir / rel)
        np.testing.assert_array_equal(cube, flat.reshape(6, 21, 4).transpose(0, 2, 1))
        assert np.isfinite(cube).all() and cube.min() >= 0 and cube.max() <= 255
    cube = read_cube(samples_dir / LANDSAT)
    assert cube[:, 0, 0].tolist() == [17.0, 18.0, 9.0, 69.0, 53.0, 27.0]


def _unicode(text):
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def _int(value):
    return b"J" + struct.pack("<i", value)


def tensor_pickle(storage_type, numel, offset, size, stride, key="0"):
    """A protocol-2 pickle laid out like torch.save's, written opcode by opcode."""
    return (
        b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n(("
        + _unicode("storage")
        + f"ctorch\n{storage_type}\n".encode()
        + _unicode(key)
        + _unicode("cpu")
        + _int(numel)
        + b"tQ"
        + _int(offset)
        + b"("
        + b"".join(_int(v) for v in size)
        + b"t("
        + b"".join(_int(v) for v in stride)
        + b"t\x89ccollections\nOrderedDict\n)Rt"
        + b"R."
    )


def make_pt(path, pkl, storage=b"", byteorder=b"little", key="0", name="cube"):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{name}/data.pkl", pkl)
        archive.writestr(f"{name}/byteorder", byteorder)
        archive.writestr(f"{name}/data/{key}", storage)
        archive.writestr(f"{name}/version", b"3\n")
    return path


def test_hand_made_tensor_with_offset_and_strides(tmp_path):
    flat = np.arange(30, dtype="<f4") * 1.5
    path = make_pt(tmp_path / "a.pt", tensor_pickle("FloatStorage", 30, 2, (2, 3), (1, 4)), flat.tobytes())
    expected = np.array([[flat[2 + i + 4 * j] for j in range(3)] for i in range(2)], dtype=np.float32)
    np.testing.assert_array_equal(read_cube(path), expected)


def test_big_endian_double_storage_becomes_float32(tmp_path):
    flat = np.array([0.5, -2.25, 1e6, 3.0], dtype=">f8")
    path = make_pt(
        tmp_path / "b.pt", tensor_pickle("DoubleStorage", 4, 0, (2, 2), (2, 1)), flat.tobytes(), b"big"
    )
    cube = read_cube(path)
    assert cube.dtype == np.float32
    np.testing.assert_array_equal(cube, [[0.5, -2.25], [1e6, 3.0]])


@pytest.mark.parametrize(
    "pkl, storage, message",
    [
        (tensor_pickle("FloatStorage", 10, 0, (2, 3), (3, 1)), b"\0" * 8, "holds 8 bytes"),
        (tensor_pickle("FloatStorage", 4, 0, (2, 3), (3, 1)), b"\0" * 16, "past the end"),
        (tensor_pickle("FloatStorage", 4, 0, (2,), (1,), key="../../x"), b"\0" * 16, "missing"),
        (tensor_pickle("FloatStorage", 4, 0, (2,), (1,))[:40], b"\0" * 16, "cannot be read"),
        (pickle.dumps({"a": 1}, protocol=2), b"", "does not hold a single tensor"),
    ],
)
def test_malformed_archives(tmp_path, pkl, storage, message):
    path = make_pt(tmp_path / "m.pt", pkl, storage)
    with pytest.raises(InputDataError, match=message):
        read_cube(path)


def test_not_a_zip_and_missing(tmp_path):
    (tmp_path / "x.pt").write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(InputDataError, match="not a torch zip archive"):
        read_cube(tmp_path / "x.pt")
    with pytest.raises(InputDataError, match="not found"):
        read_cube(tmp_path / "missing.pt")


class _Payload:
    """Unpickling this calls ``func(*args)``."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize(
    "func, source",
    [
        (os.system, "touch {marker}"),
        (eval, "open({marker!r}, 'w').close()"),
        (exec, "open({marker!r}, 'w').close()"),
    ],
)
def test_malicious_pickle_is_refused_without_executing(tmp_path, func, source):
    control = tmp_path / "control"
    marker = tmp_path / "pwned"
    # the payload works: a plain unpickler runs it (so this test can fail)
    pickle.loads(pickle.dumps(_Payload(func, (source.format(marker=str(control)),)), protocol=2))
    assert control.exists()
    evil = pickle.dumps(_Payload(func, (source.format(marker=str(marker)),)), protocol=2)
    path = make_pt(tmp_path / "evil.pt", evil, b"")
    with pytest.raises(
        InputDataError,
        match=r"asks for (posix|os|builtins|__builtin__)\.(system|eval|exec).*Nothing was executed",
    ):
        read_cube(path)
    assert not marker.exists()


def test_payload_hidden_inside_a_tensor_record_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    inner = pickle.dumps(_Payload(os.system, (f"touch {marker}",)), protocol=2)[2:-1]  # no PROTO / STOP
    good = tensor_pickle("FloatStorage", 4, 0, (4,), (1,))
    # replace the OrderedDict() of backward hooks by the payload
    evil = good.replace(b"ccollections\nOrderedDict\n)R", inner)
    assert evil != good
    path = make_pt(tmp_path / "evil.pt", evil, b"\0" * 16)
    with pytest.raises(InputDataError, match="Nothing was executed"):
        read_cube(path)
    assert not marker.exists()
