"""hy3d_tooling: what runs outside the Triton stub: the launcher, the demo and the docs generator.

Nothing here is imported by a ``model.py``; it may import ``hy3d_serving`` (settings) and the client.

* ``triton_runtime`` - finding the pinned tritonserver and assembling its Python backend;
* ``launcher`` - ``scripts/serve``: tritonserver with the settings, readiness, signals;
* ``repository`` - the generated copy of the model repository that carries ``HY3D_MAX_QUEUE_SIZE``;
* ``model_control`` / ``supervisor`` / ``drain`` - Triton's repository API, reloading a stage whose stub
  died, and the graceful drain on SIGTERM;
* ``server_process`` / ``health`` - starting a launcher from Python (tests, demo, benchmarks) and probing it;
* ``demo`` / ``docs`` - ``scripts/demo`` and the README's generated tables.
"""
