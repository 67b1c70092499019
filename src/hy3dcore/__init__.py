"""hy3dcore: the building blocks both stages use (weights layout, strict loading, image encoders, mesh operations).

Modules: ``layout`` (folder and file names of the official weights), ``loading`` (strict state-dict
loading and its one error type, ``WeightsError``), ``image_encoders`` (DINOv2 through transformers'
``Dinov2Model``, ImageNet statistics) and ``mesh`` (face reduction). Nothing here imports hy3dshape,
hy3dpaint or the serving code; they import this package.
"""
