"""Root conftest: fixtures shared by this repository's own test suites only."""

pytest_plugins = ["pytester"]
