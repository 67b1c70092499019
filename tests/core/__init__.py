"""Tests of ``hy3dcore``: the building blocks both stages share."""
