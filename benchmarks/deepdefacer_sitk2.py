"""Run DeepDefacer 2.1.2 on a CPU with SimpleITK 2.x (for ``bench_deface.py``, with DeepDefacer's Python).

Two things stop DeepDefacer 2.1.2 on a current CPU-only install, and this
wrapper works around both without changing what it computes:

* it builds its resampling transform with SimpleITK 1.x's
  ``sitk.Transform(t).AddTransform(...)``, which SimpleITK 2.x moved to
  ``CompositeTransform``, and SimpleITK 1.x has no wheel for current Pythons:
  DeepDefacer gets a view of SimpleITK whose ``Transform(t)`` is
  ``CompositeTransform(t)`` (the same composition, ITK's order);
* its Keras model is channels-first, and TensorFlow's CPU Conv3D runs
  channels-last only: the model is rebuilt channels-last with the same
  weights (a convolution kernel's layout does not depend on the data
  format) and its input and output are transposed around it.

Then its command line runs unchanged::

    dd/bin/python benchmarks/deepdefacer_sitk2.py --input_file IN --defaced_output_path OUT
"""

from __future__ import annotations

import sys
import types

import SimpleITK as sitk


def _patched_sitk() -> types.ModuleType:
    view = types.ModuleType("SimpleITK_view")
    view.__dict__.update(sitk.__dict__)
    view.Transform = lambda transform: sitk.CompositeTransform(transform)  # type: ignore[attr-defined]
    return view


class _ChannelsLast:
    """DeepDefacer's channels-first model, rebuilt channels-last, behind the same ``predict``."""

    def __init__(self, model: object) -> None:
        from keras.models import Model

        config = model.get_config()
        for layer in config["layers"]:
            c = layer["config"]
            if c.get("data_format") == "channels_first":
                c["data_format"] = "channels_last"
            if layer["class_name"] == "Concatenate" and c.get("axis") == 1:
                c["axis"] = -1
            if layer["class_name"] == "InputLayer":
                shape = list(c["batch_input_shape"])
                c["batch_input_shape"] = (shape[0], *shape[2:], shape[1])
        self.model = Model.from_config(config)
        self.model.set_weights(model.get_weights())

    def predict(self, x: object, **kwargs: object) -> object:
        import numpy as np

        out = self.model.predict(np.moveaxis(np.asarray(x), 1, -1), **kwargs)
        return np.moveaxis(out, -1, 1)


def main() -> int:
    from deepdefacer import defacer, defacer_utils

    defacer_utils.sitk = _patched_sitk()
    load = defacer.load_model
    defacer.load_model = lambda *a, **k: _ChannelsLast(load(*a, **k))
    result = defacer.deface_3D_MRI()
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
