"""Domain-free point encoders (registered in `POINT_ENCODERS`); the contract is `fusionseg.contracts.PointEncoder`.

Spectrum encoders live with their domain: `fusionseg.sem.encoders`.
"""

from fusionseg.encoders.identity import IdentityEncoder

__all__ = ["IdentityEncoder"]
