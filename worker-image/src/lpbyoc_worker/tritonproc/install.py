"""Where the `tritonserver` binary lives and what it needs to run.

Two installs exist:
- NVIDIA's server image: `/opt/tritonserver/{bin,backends,caches}` (or `tritonserver` on PATH),
  complete and runnable in place.
- the `nvidia-pytriton` wheel (dev/test environments): `pytriton/tritonserver/{bin,backends,caches}`
  with the python-backend stubs kept apart per Python version and the shared libraries in
  `site-packages/nvidia_pytriton.libs`. It must be copied into a writable runtime directory with the
  stub for this interpreter placed in `backends/python/` before it can serve python-backend models.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

IMAGE_ROOT = Path("/opt/tritonserver")
STUB_NAME = "triton_python_backend_stub"


class TritonNotFound(RuntimeError):
    """No usable tritonserver install was found."""


@dataclass(frozen=True)
class TritonInstall:
    """A tritonserver install: `root` holds `bin/`, `backends/` and `caches/`."""

    root: Path
    # Only set for the pytriton wheel: where the per-version stubs and bundled libraries are.
    stubs_dir: Path | None = None
    libs_dir: Path | None = None

    @property
    def binary(self) -> Path:
        return self.root / "bin" / "tritonserver"

    @property
    def backends_dir(self) -> Path:
        return self.root / "backends"

    @property
    def caches_dir(self) -> Path:
        return self.root / "caches"

    @property
    def needs_runtime_copy(self) -> bool:
        return self.stubs_dir is not None


def _wheel_install() -> TritonInstall | None:
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        return None
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    root = package_dir / "tritonserver"
    if not (root / "bin" / "tritonserver").is_file():
        return None
    return TritonInstall(
        root=root,
        stubs_dir=root / "python_backend_stubs",
        libs_dir=package_dir.parent / "nvidia_pytriton.libs",
    )


def locate_triton(explicit: str | os.PathLike[str] | None = None) -> TritonInstall:
    """Find tritonserver: an explicit binary, then PATH, then /opt/tritonserver, then the pytriton wheel."""
    if explicit:
        binary = Path(explicit)
        if not binary.is_file():
            raise TritonNotFound(f"tritonserver binary {binary} does not exist")
        wheel = _wheel_install()
        if wheel is not None and binary.resolve() == wheel.binary.resolve():
            return wheel
        return TritonInstall(root=binary.resolve().parent.parent)
    on_path = shutil.which("tritonserver")
    if on_path:
        return TritonInstall(root=Path(on_path).resolve().parent.parent)
    if (IMAGE_ROOT / "bin" / "tritonserver").is_file():
        return TritonInstall(root=IMAGE_ROOT)
    wheel = _wheel_install()
    if wheel is not None:
        return wheel
    raise TritonNotFound(
        "tritonserver not found: not on PATH, not in /opt/tritonserver, and the nvidia-pytriton "
        "wheel is not installed"
    )


def prepare_runtime(install: TritonInstall, runtime_dir: Path) -> TritonInstall:
    """Return an install that can run python-backend models, copying the wheel's tree if needed.

    The wheel's tree is copied rather than edited so that the venv stays pristine and several
    servers (tests, demo) can run side by side from their own directories.
    """
    if not install.needs_runtime_copy:
        return install
    assert install.stubs_dir is not None
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = install.stubs_dir / version / STUB_NAME
    if not stub.is_file():
        raise TritonNotFound(f"the pytriton wheel has no python backend stub for Python {version}")
    runtime_dir.mkdir(parents=True, exist_ok=True)
    for part in ("bin", "backends", "caches"):
        shutil.copytree(
            install.root / part, runtime_dir / part, dirs_exist_ok=True, copy_function=_copy_if_changed
        )
    _copy_if_changed(stub, runtime_dir / "backends" / "python" / STUB_NAME)
    return TritonInstall(root=runtime_dir, libs_dir=install.libs_dir)


def _copy_if_changed(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    # A restarted server reuses its tree; rewriting a binary a dying stub still runs fails (ETXTBSY).
    source_stat, target_path = os.stat(source), Path(target)
    if target_path.exists():
        target_stat = target_path.stat()
        if (target_stat.st_size, int(target_stat.st_mtime)) == (
            source_stat.st_size,
            int(source_stat.st_mtime),
        ):
            return
    shutil.copy2(source, target)


def server_environment(install: TritonInstall, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment tritonserver runs with.

    With the wheel, LD_LIBRARY_PATH gets its bundled libraries and this interpreter's LIBDIR (else
    the stub may load an older system libpython); this interpreter's bin dir goes first on PATH, else the
    python backend imports from another Python and fails with `No module named 'numpy'`.
    """
    env = dict(os.environ if base is None else base)
    # Only for the wheel: NVIDIA's image sets its own LD_LIBRARY_PATH (CUDA compat libraries first),
    # which a system LIBDIR in front would shadow.
    if install.libs_dir is not None:
        lib_dirs = [str(install.libs_dir)]
        libdir = sysconfig.get_config_var("LIBDIR")
        if libdir:
            lib_dirs.append(str(libdir))
        if env.get("LD_LIBRARY_PATH"):
            lib_dirs.append(env["LD_LIBRARY_PATH"])
        env["LD_LIBRARY_PATH"] = os.pathsep.join(lib_dirs)
    python_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([python_bin, *([env["PATH"]] if env.get("PATH") else [])])
    return env
