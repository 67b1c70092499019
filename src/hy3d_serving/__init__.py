"""hy3d_serving: what the Triton Python models share, and the tooling that runs them.

* ``triton_model`` - the request loop every ``model.py`` inherits (one response per request, errors
  mapped by ``errors``, logging by ``logs`` with the request id on every line);
* ``tensors`` / ``limits`` - reading and checking stage inputs against the contract, building outputs;
* ``settings`` / ``stage_config`` - every environment variable and ``config.pbtxt`` parameter;
* ``engines`` / ``weights`` - built-in or Hunyuan3D-2.1 engines, chosen by ``HY3D_WEIGHTS_DIR``;
* ``stages`` - what each model computes, as plain functions (also chained in-process);
* ``triton_runtime`` / ``launcher`` / ``server_process`` / ``health`` - running the real tritonserver;
* ``demo`` / ``docs`` - ``scripts/demo`` and the README's generated tables.
"""
