"""hy3d_client: thin client for the hy3d-triton image-to-3D service."""

from .contract import ContractError

__all__ = ["ContractError"]
