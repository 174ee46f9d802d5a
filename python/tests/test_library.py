"""Loading libpggssenc: the search order, errors, and the binding's agreement with include/pggssenc.h.

Search-order tests run a copy of the package in a subprocess, so that each
step finds only the files and variables that the test set up.
"""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

import pggssenc
from pggssenc import _library

CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HEADER = os.path.join(CHECKOUT, "include", "pggssenc.h")
BUILT_LIBRARY = os.path.join(CHECKOUT, "target", "release", "libpggssenc.so")
# Variables that steer the search; the subprocess starts without them.
SEARCH_VARIABLES = ("PGGSSENC_LIBRARY", "PKG_CONFIG_PATH", "PKG_CONFIG_LIBDIR", "LD_LIBRARY_PATH")

PROBE = """
import json, pggssenc
try:
    location = pggssenc.find_library()
    pggssenc.load_library()
    print(json.dumps({"path": location.path, "source": location.source, "version": pggssenc.library_version()}))
except pggssenc.LibraryNotFoundError as error:
    print(json.dumps({"error": str(error)}))
"""


@pytest.fixture
def real_library():
    """The library under test: PGGSSENC_LIBRARY when run-tests set it, else the release build."""
    path = os.environ.get("PGGSSENC_LIBRARY") or BUILT_LIBRARY
    assert os.path.isfile(path), f"{path} is missing: run cargo build --release first"
    return os.path.abspath(path)


@pytest.fixture
def package_copy(tmp_path):
    """A copy of the pggssenc package under tmp_path/root/python/, with no library anywhere near it."""
    python_dir = tmp_path / "root" / "python"
    shutil.copytree(
        os.path.dirname(pggssenc.__file__),
        python_dir / "pggssenc",
        ignore=shutil.ignore_patterns("__pycache__", "libpggssenc.so*"),
    )
    empty_pkg_config = tmp_path / "no-pkg-config"
    empty_pkg_config.mkdir()

    def probe(**variables):
        env = {key: value for key, value in os.environ.items() if key not in SEARCH_VARIABLES}
        env["PYTHONPATH"] = str(python_dir)
        # An empty PKG_CONFIG_LIBDIR hides any pggssenc.pc installed on the machine.
        env["PKG_CONFIG_LIBDIR"] = str(empty_pkg_config)
        env.update(variables)
        completed = subprocess.run(
            [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert completed.returncode == 0, completed.stderr
        return json.loads(completed.stdout)

    probe.python_dir = python_dir
    probe.root = tmp_path / "root"
    return probe


def test_environment_variable_wins(package_copy, real_library):
    os.symlink(real_library, package_copy.python_dir / "pggssenc" / "libpggssenc.so")
    result = package_copy(PGGSSENC_LIBRARY=real_library)
    assert result["source"] == "PGGSSENC_LIBRARY"
    assert result["path"] == real_library
    assert result["version"] == pggssenc.library_version()


def test_environment_variable_missing_file(package_copy, real_library):
    os.symlink(real_library, package_copy.python_dir / "pggssenc" / "libpggssenc.so")
    result = package_copy(PGGSSENC_LIBRARY="/nonexistent/libpggssenc.so")
    assert result["error"].startswith("PGGSSENC_LIBRARY is set to '/nonexistent/libpggssenc.so', but no file exists there")


def test_package_directory_second(package_copy, real_library, tmp_path):
    os.symlink(real_library, package_copy.python_dir / "pggssenc" / "libpggssenc.so.0")
    pc_dir = write_pc_file(tmp_path, real_library)
    result = package_copy(PKG_CONFIG_LIBDIR=str(pc_dir))
    assert result["source"] == "package directory"
    assert result["path"] == str(package_copy.python_dir / "pggssenc" / "libpggssenc.so.0")


def write_pc_file(tmp_path, real_library):
    """Write a pggssenc.pc whose libdir contains a link to the library, and return the .pc directory."""
    libdir = tmp_path / "pc-lib"
    libdir.mkdir()
    os.symlink(real_library, libdir / "libpggssenc.so")
    pc_dir = tmp_path / "pc"
    pc_dir.mkdir()
    (pc_dir / "pggssenc.pc").write_text(
        f"libdir={libdir}\n\nName: pggssenc\nDescription: test\nVersion: 0.1.0\nLibs: -L${{libdir}} -lpggssenc\n"
    )
    return pc_dir


def test_pkg_config_third(package_copy, real_library, tmp_path):
    pc_dir = write_pc_file(tmp_path, real_library)
    release = package_copy.root / "target" / "release"
    release.mkdir(parents=True)
    os.symlink(real_library, release / "libpggssenc.so")
    result = package_copy(PKG_CONFIG_LIBDIR=str(pc_dir))
    assert result["source"] == "pkg-config"
    assert result["path"] == str(tmp_path / "pc-lib" / "libpggssenc.so")


def test_source_checkout_fourth(package_copy, real_library):
    release = package_copy.root / "target" / "release"
    release.mkdir(parents=True)
    os.symlink(real_library, release / "libpggssenc.so")
    result = package_copy()
    assert result["source"] == "source checkout"
    assert result["path"] == str(release / "libpggssenc.so")


def test_find_library_last(package_copy, real_library, tmp_path):
    ld_dir = tmp_path / "ld"
    ld_dir.mkdir()
    # find_library returns the soname, which the dynamic loader then
    # resolves through LD_LIBRARY_PATH.
    os.symlink(real_library, ld_dir / "libpggssenc.so")
    os.symlink(real_library, ld_dir / "libpggssenc.so.0")
    result = package_copy(LD_LIBRARY_PATH=str(ld_dir))
    assert result["source"] == "ctypes.util.find_library"
    assert result["path"] == "libpggssenc.so.0"


def test_nothing_found_lists_places(package_copy):
    result = package_copy()
    assert result["error"].startswith("libpggssenc.so not found: PGGSSENC_LIBRARY is not set, ")
    assert "pkg-config knows no pggssenc" in result["error"]
    assert "cargo build --release" in result["error"]


def test_not_a_library_reports_path(package_copy, tmp_path):
    fake = tmp_path / "libpggssenc.so"
    fake.write_text("not an ELF file\n")
    result = package_copy(PGGSSENC_LIBRARY=str(fake))
    assert result["error"].startswith(f"could not load {fake} (found by PGGSSENC_LIBRARY): ")


def header_enum(name):
    """Return {member: value} of a C enum in include/pggssenc.h."""
    with open(HEADER, encoding="utf-8") as header:
        text = header.read()
    match = re.search(r"enum " + name + r"\b[^{;]*\{([^}]*)\}", text) or re.search(
        r"typedef enum \{([^}]*)\} " + name + ";", text
    )
    assert match, f"enum {name} not found in {HEADER}"
    body = re.sub(r"/\*.*?\*/", "", match.group(1), flags=re.S)
    return {key: int(value) for key, value in re.findall(r"(\w+) = (\d+)", body)}


@pytest.mark.parametrize(
    ("c_enum", "prefix", "python_enum"),
    [
        ("pggss_result", "PGGSS_RESULT_", pggssenc.Result),
        ("pggss_outcome", "PGGSS_OUTCOME_", pggssenc.Outcome),
        ("pggss_polling_status", "PGGSS_POLLING_STATUS_", pggssenc.PollingStatus),
        ("pggss_startup_kind", "PGGSS_STARTUP_KIND_", pggssenc.StartupKind),
    ],
)
def test_enums_mirror_header(c_enum, prefix, python_enum):
    from_header = {key.removeprefix(prefix): value for key, value in header_enum(c_enum).items()}
    assert from_header == {member.name: member.value for member in python_enum}


def test_prototypes_cover_header():
    with open(HEADER, encoding="utf-8") as header:
        declared = set(re.findall(r"\b(pggss_\w+)\(", header.read()))
    assert declared == set(_library.PROTOTYPES)


def test_result_text_for_known_and_unknown_codes():
    assert pggssenc.result_text(pggssenc.Result.GSS_FAILURE) == "GSSAPI call failed"
    assert pggssenc.result_text(999) == "unknown pggss_result 999"


def test_version_matches_cargo_manifest():
    with open(os.path.join(CHECKOUT, "Cargo.toml"), encoding="utf-8") as manifest:
        version = re.search(r'^version = "([^"]+)"', manifest.read(), re.M).group(1)
    assert pggssenc.library_version() == version
