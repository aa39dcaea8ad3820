"""Packaging beyond what pyproject.toml can say: the shipped model folders stay at the top of the checkout
(weights/) and install inside the package as cellcount/_weights, where cellcount.models finds them."""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["cellcount", "cellcount.*"]) + ["cellcount._weights"],
    package_dir={"cellcount._weights": "weights"},
)
