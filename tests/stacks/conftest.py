from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

_SDKS = (
    "pulumi",
    "pulumi_aws",
    "pulumi_gcp",
    "pulumi_alicloud",
    "pulumi_kubernetes",
    "pulumi_random",
    "pulumi_docker_build",
)
_MISSING = [name for name in _SDKS if importlib.util.find_spec(name) is None]
_HERE = Path(__file__).parent
# These run without any Pulumi package (config validation, static file checks).
_SDK_FREE = {"test_config.py", "test_dockerfile.py"}


def pytest_configure(config: pytest.Config) -> None:
    # The provider SDKs warn about their own deprecated classes when their modules load.
    for sdk in ("pulumi_alicloud", "pulumi_gcp", "pulumi_aws"):
        config.addinivalue_line("filterwarnings", f"ignore::DeprecationWarning:{sdk}.*")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not _MISSING:
        return
    if os.environ.get("CI"):
        # In CI a skipped stack test would read as a pass: a missing SDK is an install defect.
        raise pytest.UsageError(f"CI lacks {', '.join(_MISSING)}: the test extra must install it")
    skip = pytest.mark.skip(reason=f"needs {', '.join(_MISSING)} (pip install -e '.[all]')")
    for item in items:
        path = Path(str(item.fspath))
        if path.parent == _HERE and path.name not in _SDK_FREE:
            item.add_marker(skip)
