//! Clients of turnpike's services.
