//! Unit tests of the registry core: a fake clock, no sockets.
