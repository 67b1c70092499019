"""Tests of the texture stage's neural half (``hy3dpaint`` models, multiview diffusion, pipeline).

A package, so that its module names (``test_scheduler``...) do not clash with other test folders;
other tests import the tiny weights helper as ``paint.tiny_weights``.
"""
