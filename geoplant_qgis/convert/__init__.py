"""PyTorch checkpoints -> ``geoplant-onnx/1`` models (a tool: needs PyTorch, onnx, onnxruntime).

The plugin never imports this package: it is left out of the plugin build (``make
build``) and imports torch only inside the functions that need it.

- :func:`geoplant_qgis.convert.api.export` / :func:`~geoplant_qgis.convert.api.verify`:
  any ``torch.nn.Module`` with a card;
- ``python -m geoplant_qgis.convert malpolon --checkpoint CKPT --preset glc24|glc25 ...``:
  GeoPlant's multimodal ensemble from a Lightning ``.ckpt`` or a ``.pth`` state dict.

Install: ``.venv/bin/python -m pip install -c constraints.txt -r tools/requirements-convert.txt``.
Guide: ``docs/real-models.md``.
"""
