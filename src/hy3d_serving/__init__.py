"""hy3d_serving: what runs inside the Triton Python stub, shared by every ``model.py``.

* ``triton_model`` - the request loop every ``model.py`` inherits (one response per request, errors
  mapped by ``errors``, logging by ``logs`` with the request id on every line);
* ``tensors`` / ``limits`` - reading and checking stage inputs against the contract, building outputs;
* ``settings`` / ``stage_config`` - every environment variable and ``config.pbtxt`` parameter;
* ``engines`` / ``weights`` - built-in or Hunyuan3D-2.1 engines, chosen by ``HY3D_WEIGHTS_DIR``;
* ``stages`` - what each model computes, as plain functions (also chained in-process);

The launcher, demo and docs generator live in ``hy3d_tooling``, which no stub imports.
"""
