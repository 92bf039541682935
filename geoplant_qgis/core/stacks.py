"""One stack per cube: a VRT whose band descriptions are the cube's element names.

A cube input fed from a folder of one-band rasters (``tas_2018-01.tif`` ...) makes the
engine open and read each file for every block. :func:`build_stack` writes one VRT over
those files (one band per element, in the cube's C order, each band described by its
element's name), so that a run (or a QGIS project) gives one raster per cube instead of
912; the engine finds the elements by band description. All the elements must be on one
pixel grid (CRS, transform, size), as GeoPlant's CHELSA and Ecodatacube rasters are; the
VRT is written through :class:`core.files.Publication`.

Command line (no QGIS needed)::

    python -m geoplant_qgis.core.stacks MODEL.onnx INPUT RASTER_OR_FOLDER... -o cube.vrt
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from xml.sax.saxutils import escape

import rasterio

from .errors import GeoPlantError, InputDataError

_GDAL_TYPES = {
    "uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32",
    "int32": "Int32", "float32": "Float32", "float64": "Float64", "uint64": "UInt64", "int64": "Int64",
}  # fmt: skip


@dataclass(frozen=True)
class Stack:
    path: str
    bands: int


def _band_xml(index: int, name: str, src, band: int) -> str:
    dtype = _GDAL_TYPES.get(src.dtypes[band - 1], "Float64")
    nodata = src.nodatavals[band - 1]
    w, h = src.width, src.height
    lines = [
        f'  <VRTRasterBand dataType="{dtype}" band="{index}">',
        f"    <Description>{escape(name)}</Description>",
    ]
    if nodata is not None:
        lines.append(f"    <NoDataValue>{nodata!r}</NoDataValue>")
    lines += [
        "    <SimpleSource>",
        f'      <SourceFilename relativeToVRT="0">{escape(os.path.abspath(src.name))}</SourceFilename>',
        f"      <SourceBand>{band}</SourceBand>",
        f'      <SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/>',
        f'      <DstRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/>',
        "    </SimpleSource>",
        "  </VRTRasterBand>",
    ]
    return "\n".join(lines)


def stack_xml(names, refs) -> str:
    """The VRT text: band i = ``refs[i]`` described as ``names[i]``; one pixel grid or
    :class:`InputDataError` naming the first raster off it."""
    parts: list[str] = []
    grid = None
    first = ""
    for i, (name, ref) in enumerate(zip(names, refs, strict=True), start=1):
        with rasterio.open(ref.path) as src:
            here = (src.crs, src.transform, src.width, src.height)
            if grid is None:
                grid, first = here, os.path.basename(ref.path)
                t = src.transform
                head = [
                    f'<VRTDataset rasterXSize="{src.width}" rasterYSize="{src.height}">',
                    f"  <SRS>{escape(src.crs.to_wkt()) if src.crs else ''}</SRS>",
                    f"  <GeoTransform>{t.c!r}, {t.a!r}, {t.b!r}, {t.f!r}, {t.d!r}, {t.e!r}</GeoTransform>",
                ]
                parts.extend(head)
            elif here != grid:
                raise InputDataError(
                    f"'{os.path.basename(ref.path)}' ({name}) is not on the pixel grid of '{first}' (CRS, "
                    "pixel size, origin and size must be equal to stack them). Warp the rasters onto one "
                    "grid first (gdalwarp), or give them to the run as they are."
                )
            parts.append(_band_xml(i, name, src, ref.band))
    parts.append("</VRTDataset>")
    return "\n".join(parts) + "\n"


def build_stack(spec, rasters, output, mapping=None, progress=None) -> Stack:
    """A VRT at ``output`` with one band per element of the card input ``spec`` (a
    :class:`core.modelcard.InputSpec`), found among ``rasters`` (files or folders) and
    ``mapping`` by the run's rules; missing elements reported as a run reports them."""
    from .files import Publication, check_outputs
    from .modelcard import ModelCard
    from .predict.inputs import resolve_inputs

    card = ModelCard(species=(), output=None, inputs=(spec,))  # type: ignore[arg-type]
    rasters = [os.fspath(r) for r in rasters]
    check_outputs({"OUTPUT": os.fspath(output)}, {"RASTERS": rasters})
    refs = resolve_inputs(card, rasters, mapping)
    names = spec.source_names
    text = stack_xml(names, [refs[n] for n in names])
    with Publication(progress) as publication:
        publication.write_text(publication.temporary(os.fspath(output)), text)
        (path,) = publication.publish()
    return Stack(path, len(names))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m geoplant_qgis.core.stacks",
        description="Build one VRT per cube input: bands described by the cube's element names.",
    )
    parser.add_argument("model", help="the .onnx model whose card names the cube's elements")
    parser.add_argument("input", help="the name of the cube input in the card (e.g. bioclim)")
    parser.add_argument("rasters", nargs="+", help="rasters or folders of rasters holding the elements")
    parser.add_argument("-o", "--output", required=True, help="the VRT to write")
    parser.add_argument("--mapping", default=None, help="MAPPING text or CSV, as for predict")
    args = parser.parse_args(argv)
    from .modelcard import read_model_card

    try:
        card = read_model_card(args.model)
        specs = {x.name: x for x in card.inputs}
        if args.input not in specs:
            raise InputDataError(f"The model has no input '{args.input}' (inputs: {', '.join(specs)}).")
        stack = build_stack(specs[args.input], args.rasters, args.output, args.mapping)
    except GeoPlantError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{stack.path}: {stack.bands} bands")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
