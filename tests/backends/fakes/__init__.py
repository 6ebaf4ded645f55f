"""Fakes of vendor modules (only the vendor boundary): same names, signatures and failure modes."""
