"""What a coded frame's picture is while on its way: anything with ``result()`` (a worker's
synthesis, a picture composed from the previous one, a grey view, a residual added)."""

from __future__ import annotations

from concurrent.futures import Future

from lvc.codec.blend import BlendedPicture
from lvc.codec.grey import GreyPicture
from lvc.codec.residual_picture import ResidualPicture
from lvc.codec.skip import SkippedPicture
from lvc.codec.synthesis import Bands, Deferred

Pending = Future | Bands | Deferred | SkippedPicture | BlendedPicture | GreyPicture | ResidualPicture
