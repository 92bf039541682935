"""geoplant:modelinfo through processing.run."""

import json

import onnx
import pytest
from test_modelcard import CARD, GOOD_INPUTS, GOOD_OUTPUTS, make_model


def run(params, feedback=None):
    import processing

    return processing.run("geoplant:modelinfo", params, feedback=feedback)


def test_modelinfo_outputs_the_card(geoplant_provider, tmp_path):
    from qgis.core import QgsProcessingFeedback

    model = tmp_path / "m.onnx"
    onnx.save(make_model(GOOD_INPUTS, GOOD_OUTPUTS), str(model))
    log = []

    class Feedback(QgsProcessingFeedback):
        def pushInfo(self, info):
            log.append(info)

    out = tmp_path / "card.json"
    result = run({"MODEL": str(model), "OUTPUT_JSON": str(out)}, Feedback())
    assert json.loads(result["CARD_JSON"]) == CARD | {"grid": {"crs": "EPSG:3035", "cell_size_m": 100.0}}
    assert json.loads(out.read_text()) == json.loads(result["CARD_JSON"])
    text = "\n".join(log)
    assert "Species: 2: Quercus ilex (11), Pinus pinea (7)" in text
    assert "Input 'env': point, 2 variables: bio1, bio12" in text
    assert "mean [10, 800], std [2, 100]" in text
    assert "Input 's2': patch 2 x 4 x 4 px at 10 m; bands: red, nir" in text
    assert "scale 0.5" in text
    assert "Input 'clim': cube 2 x 3; 6 variables: a, b, c, d, e, f" in text
    assert "Default grid: EPSG:3035, cells of 100 m" in text
    listing = json.loads(result["INPUTS_JSON"])
    assert [x["name"] for x in listing] == ["env", "s2", "clim"]
    assert listing[2]["variables"] == list("abcdef") and listing[1]["preprocess"][0]["op"] == "scale"
    # without OUTPUT_JSON: the string output only, no file written
    again = run({"MODEL": str(model)})
    assert again["CARD_JSON"] == result["CARD_JSON"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["card.json", "m.onnx"]


def test_modelinfo_refuses_a_model_without_card(geoplant_provider, tmp_path):
    from qgis.core import QgsProcessingException

    model = tmp_path / "nocard.onnx"
    onnx.save(make_model(GOOD_INPUTS, GOOD_OUTPUTS, card=None), str(model))
    with pytest.raises(QgsProcessingException, match="This model has no 'geoplant' card"):
        run({"MODEL": str(model), "OUTPUT_JSON": str(tmp_path / "x.json")})
    assert not (tmp_path / "x.json").exists()


def test_modelinfo_refuses_the_model_as_its_output(geoplant_provider, tmp_path):
    """OUTPUT_JSON = MODEL: refused before anything is written, the model byte for byte as it was."""
    import hashlib

    from qgis.core import QgsProcessingException

    model = tmp_path / "m.onnx"
    onnx.save(make_model(GOOD_INPUTS, GOOD_OUTPUTS), str(model))
    before = hashlib.sha256(model.read_bytes()).hexdigest()
    with pytest.raises(QgsProcessingException):
        run({"MODEL": str(model), "OUTPUT_JSON": str(model)})
    assert hashlib.sha256(model.read_bytes()).hexdigest() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]
