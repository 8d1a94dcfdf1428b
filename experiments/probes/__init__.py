"""Instruments: plain functions of (model or functional params, data) -> numbers."""
