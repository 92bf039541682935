#!/usr/bin/env python3
"""Train the bundled demo model on a GeoPlant-format world and export it as ``geoplant-onnx/1``.

Reads the presence-absence surveys, the environmental-values CSVs and the GLC25 patches
through the project's own GeoPlant readers (``geoplant_qgis.core.geoplant``), trains a
multimodal network (an MLP on the environmental variables + a small CNN on the 4 x 64 x 64
Sentinel-2 patches, fused, one sigmoid per species), exports ONNX (opset 17, dynamic batch)
with its model card, and reports the held-out F1@25 against the naive baseline.

Needs PyTorch (``tools/requirements-train.txt``; not a runtime dependency of the plugin):

    .venv/bin/python -m pip install -c constraints.txt -r tools/requirements-train.txt
    .venv/bin/python tools/make_world.py build/demo_world
    .venv/bin/python tools/train_model.py build/demo_world --output geoplant_qgis/models/geoplant_demo.onnx

Seeded and single-threaded by default, so the same world and seed give the same weights.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tools"))

import make_world  # noqa: E402

from geoplant_qgis.core import evaluate as ev  # noqa: E402
from geoplant_qgis.core.geoplant.envvalues import read_env_values  # noqa: E402
from geoplant_qgis.core.geoplant.layout import PATCH_BANDS, glc25_patch_relpath  # noqa: E402
from geoplant_qgis.core.geoplant.observations import aggregate_surveys  # noqa: E402
from geoplant_qgis.core.geoplant.patches import read_glc25_patch  # noqa: E402
from geoplant_qgis.core.modelcard import FORMAT, ModelCard, embed_model_card, read_model_card  # noqa: E402

VARIABLES = tuple(make_world.VARIABLES)  # the world's rasters, in its order
BANDS = PATCH_BANDS
PATCH_SIZE = make_world.PATCH_SIZE
PATCH_SCALE = 1e-4  # int16 reflectance x 10000 -> reflectance


def load_subset(files, subset):
    """Surveys, env matrix [N, V] (stored raster values), patches int16 [N, 4, 64, 64], species
    lists; ``files``: the world's manifest (:func:`make_world.load_world`)."""
    surveys = aggregate_surveys(files[f"pa_{subset}"])
    ids = surveys["surveyId"].to_numpy(np.int64)
    env = None
    for path in files[f"env_{subset}"].values():
        frame = read_env_values(path)
        env = frame if env is None else env.join(frame, how="outer")
    missing = [v for v in VARIABLES if v not in env.columns]
    if missing:
        raise SystemExit(f"environmental values lack {missing}")
    x_env = env.reindex(ids)[list(VARIABLES)].to_numpy(np.float32)
    patch_dir = files[f"patches_{subset}"]
    patches = np.empty((len(ids), 4, PATCH_SIZE, PATCH_SIZE), dtype=np.int16)
    for i, sid in enumerate(ids.tolist()):
        patch = read_glc25_patch(os.path.join(patch_dir, glc25_patch_relpath(sid)))
        patches[i] = patch.data
    keep = ~np.isnan(x_env).any(axis=1) & (patches.reshape(len(ids), -1) >= 0).all(axis=1)
    lists = [list(s) for s in surveys["speciesIds"]]
    return {
        "ids": ids[keep],
        "lon": surveys["lon"].to_numpy()[keep],
        "lat": surveys["lat"].to_numpy()[keep],
        "env": x_env[keep],
        "patches": patches[keep],
        "species": [s for s, k in zip(lists, keep, strict=True) if k],
    }


def build_model(n_vars, n_species):
    import torch
    from torch import nn

    class DemoSDM(nn.Module):
        """Env MLP + patch CNN, fused, one logit per species."""

        def __init__(self):
            super().__init__()
            self.env = nn.Sequential(nn.Linear(n_vars, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU())
            self.cnn = nn.Sequential(
                nn.AvgPool2d(4),  # 64 px at 10 m -> 16 px at 40 m
                nn.Conv2d(4, 16, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(16, 32, 3, stride=2, padding=1),  # 8 x 8
                nn.ReLU(),
                nn.Conv2d(32, 32, 3, stride=2, padding=1),  # 4 x 4
                nn.ReLU(),
                nn.Flatten(),
                nn.Linear(32 * 16, 64),
                nn.ReLU(),
            )
            self.head = nn.Sequential(
                nn.Linear(128, 192), nn.ReLU(), nn.Dropout(0.2), nn.Linear(192, n_species)
            )

        def forward(self, point, patch):
            return self.head(torch.cat([self.env(point), self.cnn(patch)], dim=1))

    return DemoSDM()


def train(world_dir, output, seed=0, epochs=80, threads=1, log=print):
    import torch

    t0 = time.perf_counter()
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng(seed)
    world = make_world.load_world(world_dir)
    if world is None:
        raise SystemExit(f"no world in {world_dir} (make it with tools/make_world.py)")
    files = world["files"]
    train_set = load_subset(files, "train")
    test_set = load_subset(files, "test")
    log(
        f"read {len(train_set['ids'])} training and {len(test_set['ids'])} test surveys "
        f"in {time.perf_counter() - t0:.1f} s"
    )

    import pandas as pd

    table = pd.read_csv(files["species"])
    species_ids = table["speciesId"].to_numpy(np.int64)
    names = table["name"].tolist()
    column = {int(s): j for j, s in enumerate(species_ids)}
    y = np.zeros((len(train_set["ids"]), len(species_ids)), dtype=np.float32)
    for i, lst in enumerate(train_set["species"]):
        for s in lst:
            if int(s) in column:
                y[i, column[int(s)]] = 1.0

    env_mean = train_set["env"].mean(axis=0).astype(np.float64)
    env_std = np.maximum(train_set["env"].std(axis=0).astype(np.float64), 1e-6)
    refl = train_set["patches"].astype(np.float32) * PATCH_SCALE
    band_mean = refl.mean(axis=(0, 2, 3)).astype(np.float64)
    band_std = np.maximum(refl.std(axis=(0, 2, 3)).astype(np.float64), 1e-6)

    def prepare(subset):
        pe = (subset["env"] - env_mean) / env_std
        pp = (subset["patches"].astype(np.float32) * PATCH_SCALE - band_mean[None, :, None, None]) / band_std[
            None, :, None, None
        ]
        return torch.from_numpy(pe.astype(np.float32)), torch.from_numpy(pp.astype(np.float32))

    xe, xp = prepare(train_set)
    yt = torch.from_numpy(y)
    model = build_model(len(VARIABLES), len(species_ids))
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    n = len(yt)
    batch = 64
    for epoch in range(epochs):
        model.train()
        order = torch.from_numpy(rng.permutation(n))
        total = 0.0
        for start in range(0, n, batch):
            idx = order[start : start + batch]
            patch = xp[idx]
            flips = rng.integers(0, 4)
            if flips & 1:
                patch = torch.flip(patch, dims=[3])
            if flips & 2:
                patch = torch.flip(patch, dims=[2])
            opt.zero_grad()
            loss = loss_fn(model(xe[idx], patch), yt[idx])
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        sched.step()
        if epoch % 10 == 9 or epoch == epochs - 1:
            log(f"epoch {epoch + 1}/{epochs}: loss {total / n:.4f} ({time.perf_counter() - t0:.0f} s)")

    model.eval()
    te, tp = prepare(test_set)
    with torch.no_grad():
        probs_torch = torch.sigmoid(model(te, tp)).numpy()

    # export: ONNX opset 17, dynamic batch, card embedded
    import onnx

    card = {
        "format": FORMAT,
        "name": "GeoPlant demo model (synthetic world)",
        "description": (
            "Multimodal SDM trained by tools/train_model.py on the synthetic GeoPlant-format world of "
            "tools/make_world.py (virtual species in the Cevennes, France): an MLP on 7 environmental "
            "variables + a small CNN on 4 x 64 x 64 Sentinel-2 patches at 10 m, fused; one sigmoid per "
            "species. For demonstration only: the species are made up."
        ),
        "license": "MIT",
        "citation": (
            "Data formats: Picek et al., GeoPlant: Spatial Plant Species Prediction Dataset, NeurIPS 2024 "
            "Datasets and Benchmarks."
        ),
        "species": [{"id": int(s), "name": str(nm)} for s, nm in zip(species_ids, names, strict=True)],
        "output": {"name": "logits", "activation": "sigmoid"},
        "inputs": [
            {
                "name": "point",
                "kind": "point",
                "variables": list(VARIABLES),
                "mean": [float(f"{v:.9g}") for v in env_mean],
                "std": [float(f"{v:.9g}") for v in env_std],
            },
            {
                "name": "patch",
                "kind": "patch",
                "bands": list(BANDS),
                "size": PATCH_SIZE,
                "pixel_size_m": 10.0,
                "scale": PATCH_SCALE,
                "mean": [float(f"{v:.9g}") for v in band_mean],
                "std": [float(f"{v:.9g}") for v in band_std],
            },
        ],
        "grid": {"crs": "EPSG:3035", "cell_size_m": 100},
    }
    # the card normalises with the rounded statistics: retrain-free check that rounding is harmless
    ModelCard.from_dict(card)
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    tmp = os.path.abspath(output) + ".part.onnx"
    torch.onnx.export(
        model,
        (xe[:2], xp[:2]),
        tmp,
        input_names=["point", "patch"],
        output_names=["logits"],
        dynamic_axes={"point": {0: "batch"}, "patch": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    proto = onnx.load(tmp)
    proto.producer_name = "geoplant_qgis tools/train_model.py"
    embed_model_card(proto, card)
    onnx.checker.check_model(proto)
    onnx.save(proto, tmp)
    read_model_card(tmp)  # validates the card against the graph
    os.replace(tmp, output)

    # held-out score through onnxruntime on the exported file
    import onnxruntime as ort

    session = ort.InferenceSession(output, providers=["CPUExecutionProvider"])
    card_obj = read_model_card(output, session)
    feeds = {
        "point": card_obj.inputs[0].normalise(test_set["env"]),
        "patch": card_obj.inputs[1].normalise(test_set["patches"].astype(np.float32)),
    }
    logits = session.run(["logits"], feeds)[0]
    probs = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    result = ev.evaluate(test_set["ids"], test_set["species"], species_ids, probs, 25, train_set["species"])
    summary = result.summary()
    summary["max_abs_diff_torch_vs_onnx"] = float(np.abs(probs - probs_torch).max())
    summary["train_surveys"] = len(train_set["ids"])
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    summary["bytes"] = os.path.getsize(output)
    log(json.dumps(summary, indent=1))
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description="Train and export the GeoPlant demo model.")
    parser.add_argument("world", help="folder written by tools/make_world.py")
    parser.add_argument(
        "--output", default=os.path.join(ROOT, "geoplant_qgis", "models", "geoplant_demo.onnx")
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=80)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 = bit-reproducible)")
    parser.add_argument("--report", help="write the held-out summary as JSON here")
    args = parser.parse_args(argv)
    summary = train(args.world, args.output, seed=args.seed, epochs=args.epochs, threads=args.threads)
    if args.report:
        with open(args.report, "w") as fh:
            json.dump(summary, fh, indent=1)


if __name__ == "__main__":
    main()
