"""Build step for the optional C accelerators (the tracer's step log, the
exploring loop's pick loop).

Everything else about the package is declared in pyproject.toml.  The
extension is built on Linux CPython with the GIL (the C types rely on it);
elsewhere, or when it fails to compile, the package installs without it and
the tracer uses the pure-Python types of ``pytest_asyncspec/tracing/step_log.py``
and the exploring loop its Python pick loop.
"""

import sys
import sysconfig

from setuptools import Extension, setup

ext_modules = []
if (
    sys.platform == "linux"
    and sys.implementation.name == "cpython"
    and not sysconfig.get_config_var("Py_GIL_DISABLED")
):
    ext_modules.append(
        Extension(
            "pytest_asyncspec.tracing._step_log_c",
            ["pytest_asyncspec/tracing/_step_log_c.c"],
            optional=True,
        )
    )
    # The exploring loop's pick loop (exploration/exploring_loop.py has the
    # Python twin, used without it).
    ext_modules.append(
        Extension(
            "pytest_asyncspec.exploration._pick_c",
            ["pytest_asyncspec/exploration/_pick_c.c"],
            optional=True,
        )
    )

setup(ext_modules=ext_modules)
