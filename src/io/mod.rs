//! I/O adapters: they move bytes between the core and a transport.
