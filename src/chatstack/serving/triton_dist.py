"""Locate the Triton Inference Server that ships inside the `nvidia-pytriton` wheel.

The wheel bundles a real `tritonserver` binary, the python backend and one
python-backend stub per Python version. chatstack assembles a backend folder
holding the stub that matches the running interpreter, and builds the library
path so that the stub loads *this* interpreter's libpython (not an older system
one, which breaks `import ssl` inside models).
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TritonDistribution:
    """Paths of one Triton installation usable on this machine."""

    binary: Path
    backend_dir: Path
    library_path: str
    site_dirs: str


def _pytriton_root() -> Path:
    try:
        import pytriton
    except ImportError as exc:
        raise RuntimeError(
            "nvidia-pytriton is not installed; run `make install` to get the bundled tritonserver"
        ) from exc
    return Path(pytriton.__file__).resolve().parent / "tritonserver"


def _python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def assemble_backends(target: Path) -> Path:
    """Build `target/python/` from the wheel's python backend plus the matching stub."""
    root = _pytriton_root()
    stub = root / "python_backend_stubs" / _python_version() / "triton_python_backend_stub"
    if not stub.exists():
        raise RuntimeError(f"no python backend stub for Python {_python_version()} in {root}")
    python_dir = target / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    for source in (root / "backends" / "python").iterdir():
        if source.is_file():
            _copy_if_changed(source, python_dir / source.name)
    _copy_if_changed(stub, python_dir / stub.name)
    shutil.copyfile(Path(__file__).with_name("stub_site.py"), python_dir / "chatstack_site.py")
    return target


def _copy_if_changed(source: Path, dest: Path) -> None:
    if dest.exists() and dest.stat().st_size == source.stat().st_size:
        return
    shutil.copy2(source, dest)


def library_path() -> str:
    """This interpreter's libpython first, then the wheel's bundled libraries."""
    libs = Path(sysconfig.get_paths()["purelib"]) / "nvidia_pytriton.libs"
    parts = [sysconfig.get_config_var("LIBDIR"), str(libs), os.environ.get("LD_LIBRARY_PATH", "")]
    return ":".join(p for p in parts if p)


def site_dirs() -> str:
    """Directories the models need on sys.path: chatstack itself and this environment's packages."""
    import chatstack

    package_parent = Path(chatstack.__file__).resolve().parent.parent
    parts = [str(package_parent), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    return os.pathsep.join(dict.fromkeys(parts))


def find_triton(work_dir: Path) -> TritonDistribution:
    binary = _pytriton_root() / "bin" / "tritonserver"
    if not binary.exists():
        raise RuntimeError(f"tritonserver binary not found at {binary}")
    return TritonDistribution(
        binary=binary,
        backend_dir=assemble_backends(work_dir / "backends"),
        library_path=library_path(),
        site_dirs=site_dirs(),
    )
