"""Shipped model files of deephealth_deid (installed as ``deephealth_deid.shipped_models``)."""
