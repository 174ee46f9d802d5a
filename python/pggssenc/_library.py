"""Locate and load libpggssenc with ctypes, and declare its C prototypes.

Search order, first match wins:

1. the PGGSSENC_LIBRARY environment variable, a path to the library;
2. a libpggssenc.so* file in this package's directory;
3. the libdir of ``pkg-config --variable=libdir pggssenc``;
4. target/release/libpggssenc.so of a source checkout, found relative to
   this package (python/pggssenc/ -> ../../target/release/);
5. ctypes.util.find_library("pggssenc"), which consults the ldconfig cache,
   the compiler's search path and LD_LIBRARY_PATH.

A PGGSSENC_LIBRARY that names a missing file is an error, not a reason to
keep searching, so that a typo never loads another build silently.
"""

import ctypes
import ctypes.util
import glob
import os
import subprocess
import threading
from collections import namedtuple
from ctypes import (
    CFUNCTYPE,
    POINTER,
    c_bool,
    c_char,
    c_char_p,
    c_int,
    c_size_t,
    c_ssize_t,
    c_uint8,
    c_uint32,
    c_void_p,
)

from .errors import LibraryNotFoundError

ENV_VARIABLE = "PGGSSENC_LIBRARY"
LIBRARY_NAME = "libpggssenc.so"
PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
# python/pggssenc/ -> the checkout root, which holds target/release/.
CHECKOUT_LIBRARY = os.path.join(os.path.dirname(os.path.dirname(PACKAGE_DIR)), "target", "release", LIBRARY_NAME)
PKG_CONFIG_TIMEOUT_SECONDS = 10

LibraryLocation = namedtuple("LibraryLocation", ["path", "source"])
LibraryLocation.__doc__ = "Where the library was found: a path (or a soname for find_library) and the search step."

pggss_conn_p = c_void_p
pggss_result = c_uint32
pggss_outcome = c_int
pggss_startup_kind = c_int

READ_CALLBACK = CFUNCTYPE(c_ssize_t, c_void_p, POINTER(c_uint8), c_size_t, POINTER(c_int))
WRITE_CALLBACK = CFUNCTYPE(c_ssize_t, c_void_p, POINTER(c_uint8), c_size_t, POINTER(c_int))

# Every function of include/pggssenc.h: name -> (restype, argtypes).
PROTOTYPES = {
    "pggss_version": (c_char_p, []),
    "pggss_result_text": (c_size_t, [c_uint32, POINTER(c_char), c_size_t]),
    # Acceptor role.
    "pggss_acceptor_new": (pggss_result, [POINTER(pggss_conn_p)]),
    "pggss_acceptor_set_keytab": (pggss_result, [pggss_conn_p, c_char_p]),
    "pggss_acceptor_set_service": (pggss_result, [pggss_conn_p, c_char_p]),
    "pggss_acceptor_set_decline": (pggss_result, [pggss_conn_p, c_bool]),
    "pggss_conn_accept_poll": (c_int, [pggss_conn_p]),
    "pggss_conn_startup_packet": (
        pggss_result,
        [pggss_conn_p, POINTER(pggss_startup_kind), POINTER(POINTER(c_uint8)), POINTER(c_size_t), POINTER(c_size_t)],
    ),
    "pggss_conn_client_user": (pggss_result, [pggss_conn_p, POINTER(c_char), c_size_t, POINTER(c_size_t)]),
    "pggss_conn_store_delegated_credentials": (pggss_result, [pggss_conn_p, c_char_p]),
    # Client role and shared functions.
    "pggss_conn_new": (pggss_result, [POINTER(pggss_conn_p)]),
    "pggss_conn_free": (None, [pggss_conn_p]),
    "pggss_conn_set_param": (pggss_result, [pggss_conn_p, c_char_p, c_char_p]),
    "pggss_conn_set_conninfo": (pggss_result, [pggss_conn_p, c_char_p]),
    "pggss_conn_set_fd": (pggss_result, [pggss_conn_p, c_int]),
    "pggss_conn_set_callbacks": (pggss_result, [pggss_conn_p, READ_CALLBACK, WRITE_CALLBACK, c_void_p]),
    "pggss_conn_use_buffers": (pggss_result, [pggss_conn_p]),
    "pggss_conn_feed": (pggss_result, [pggss_conn_p, c_void_p, c_size_t]),
    "pggss_conn_feed_eof": (pggss_result, [pggss_conn_p]),
    "pggss_conn_take_output": (c_size_t, [pggss_conn_p, c_void_p, c_size_t]),
    "pggss_conn_output_pending": (c_size_t, [pggss_conn_p]),
    "pggss_conn_wanted": (c_size_t, [pggss_conn_p]),
    "pggss_conn_connect_poll": (c_int, [pggss_conn_p]),
    "pggss_conn_read": (c_ssize_t, [pggss_conn_p, c_void_p, c_size_t]),
    "pggss_conn_write": (c_ssize_t, [pggss_conn_p, c_void_p, c_size_t]),
    "pggss_conn_outcome": (pggss_outcome, [pggss_conn_p]),
    "pggss_conn_encryption_in_use": (c_bool, [pggss_conn_p]),
    "pggss_conn_gss_context": (c_void_p, [pggss_conn_p]),
    "pggss_conn_client_principal": (pggss_result, [pggss_conn_p, POINTER(c_char), c_size_t, POINTER(c_size_t)]),
    "pggss_conn_credentials_delegated": (c_bool, [pggss_conn_p]),
    "pggss_conn_max_plaintext": (c_size_t, [pggss_conn_p]),
    "pggss_conn_pending": (c_size_t, [pggss_conn_p]),
    "pggss_conn_error_message": (c_char_p, [pggss_conn_p]),
    "pggss_conn_last_result": (pggss_result, [pggss_conn_p]),
}

_lock = threading.Lock()
_loaded = None


def _from_environment():
    path = os.environ.get(ENV_VARIABLE)
    if not path:
        return None
    if not os.path.isfile(path):
        raise LibraryNotFoundError(
            f"{ENV_VARIABLE} is set to {path!r}, but no file exists there; "
            f"point it at a built libpggssenc.so (cargo build --release writes "
            f"target/release/{LIBRARY_NAME}) or unset it to search the usual places"
        )
    return LibraryLocation(os.path.abspath(path), ENV_VARIABLE)


def _first_library_in(directory):
    """Return libpggssenc.so in directory, else its first versioned name (libpggssenc.so.0, ...)."""
    exact = os.path.join(directory, LIBRARY_NAME)
    if os.path.isfile(exact):
        return exact
    versioned = sorted(path for path in glob.glob(exact + ".*") if os.path.isfile(path))
    return versioned[0] if versioned else None


def _from_package_directory():
    path = _first_library_in(PACKAGE_DIR)
    return LibraryLocation(path, "package directory") if path else None


def _from_pkg_config():
    try:
        completed = subprocess.run(
            ["pkg-config", "--variable=libdir", "pggssenc"],
            capture_output=True,
            text=True,
            timeout=PKG_CONFIG_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        # pkg-config is not installed or hangs: this step finds nothing.
        return None
    libdir = completed.stdout.strip()
    if completed.returncode != 0 or not libdir:
        # pggssenc.pc is not on the pkg-config search path.
        return None
    path = _first_library_in(libdir)
    return LibraryLocation(path, "pkg-config") if path else None


def _from_source_checkout():
    if os.path.isfile(CHECKOUT_LIBRARY):
        return LibraryLocation(CHECKOUT_LIBRARY, "source checkout")
    return None


def _from_find_library():
    name = ctypes.util.find_library("pggssenc")
    return LibraryLocation(name, "ctypes.util.find_library") if name else None


def find_library():
    """Return the LibraryLocation of libpggssenc without loading it.

    Raises LibraryNotFoundError when PGGSSENC_LIBRARY names a missing file
    or when no step finds the library.
    """
    for step in (_from_environment, _from_package_directory, _from_pkg_config, _from_source_checkout, _from_find_library):
        location = step()
        if location is not None:
            return location
    raise LibraryNotFoundError(
        f"{LIBRARY_NAME} not found: {ENV_VARIABLE} is not set, {PACKAGE_DIR} has no {LIBRARY_NAME}*, "
        f"pkg-config knows no pggssenc, {CHECKOUT_LIBRARY} does not exist, and "
        f"ctypes.util.find_library('pggssenc') found nothing; build it with cargo build --release "
        f"or set {ENV_VARIABLE} to its path"
    )


def _declare(library, path):
    for name, (restype, argtypes) in PROTOTYPES.items():
        try:
            function = getattr(library, name)
        except AttributeError:
            raise LibraryNotFoundError(
                f"{path} has no function {name}; it is older than this binding, so rebuild or update it"
            ) from None
        function.restype = restype
        function.argtypes = argtypes


def load_library():
    """Find and load libpggssenc once per process; return (ctypes.CDLL, LibraryLocation)."""
    global _loaded
    with _lock:
        if _loaded is None:
            location = find_library()
            try:
                library = ctypes.CDLL(location.path, use_errno=True)
            except OSError as error:
                raise LibraryNotFoundError(
                    f"could not load {location.path} (found by {location.source}): {error}"
                ) from error
            _declare(library, location.path)
            _loaded = (library, location)
        return _loaded


def lib():
    """Return the loaded ctypes library, loading it on first use."""
    return load_library()[0]


def library_location():
    """Return the LibraryLocation of the loaded library, loading it on first use."""
    return load_library()[1]


def library_version():
    """Return the version string of the loaded library, such as "0.1.0"."""
    return lib().pggss_version().decode()


def result_text(code):
    """Return the library's short description of a result code."""
    library = lib()
    size = library.pggss_result_text(int(code), None, 0)
    buffer = ctypes.create_string_buffer(size + 1)
    library.pggss_result_text(int(code), buffer, size + 1)
    return buffer.value.decode()
