//! The I/O layer: sockets and worker threads that feed the sans-IO core.
