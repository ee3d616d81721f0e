"""Build script; the metadata lives in pyproject.toml.

The repository's top-level ``models/`` folder (shipped model files, their cards
and registry.json) is installed as the package ``deephealth_deid.shipped_models``,
so the models load offline after a plain, non-editable install.
"""

from setuptools import find_packages, setup

setup(
    packages=[
        *find_packages(include=["deephealth_deid", "deephealth_deid.*"]),
        "deephealth_deid.shipped_models",
    ],
    package_dir={"deephealth_deid.shipped_models": "models"},
    package_data={
        "deephealth_deid": ["py.typed", "data/assets/*.npz", "data/assets/README.md", "text/*.yaml"],
        "deephealth_deid.shipped_models": ["*.json", "*.md", "*.safetensors"],
    },
)
