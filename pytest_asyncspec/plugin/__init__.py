"""The pytest plugin: the only part of the package that imports pytest or
pytest-asyncio.  Its entry point is :mod:`.hooks`; see docs/architecture.md."""
