//! UDP socket construction: reuse-port listeners, large buffers, non-blocking.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// What kind of UDP socket to make.
#[derive(Clone, Copy, Debug)]
pub struct UdpOptions {
    /// Share the port between workers (`SO_REUSEPORT`): listeners only.
    pub reuse_port: bool,
    /// Receive and send buffer size asked of the kernel (it may cap it at `rmem_max`).
    pub buffer_bytes: usize,
    /// Set the don't-fragment bit (IPv4 `IP_PMTUDISC_DO`, IPv6 `IPV6_DONTFRAG`).
    pub dont_fragment: bool,
}

/// Creates a non-blocking UDP socket bound to `addr`. IPv6 sockets are IPv6-only, so `[::]` and
/// `0.0.0.0` can be bound side by side.
pub fn bind_udp(addr: SocketAddr, opts: UdpOptions) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    if opts.reuse_port {
        socket.set_reuse_port(true)?;
    }
    if opts.buffer_bytes > 0 {
        // Best effort: the kernel caps these at net.core.{r,w}mem_max; see docs for sysctls.
        let _ = socket.set_recv_buffer_size(opts.buffer_bytes);
        let _ = socket.set_send_buffer_size(opts.buffer_bytes);
    }
    if opts.dont_fragment {
        set_dont_fragment(&socket, addr.is_ipv6());
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

fn set_dont_fragment(socket: &Socket, v6: bool) {
    use std::os::fd::AsRawFd;
    let fd = socket.as_raw_fd();
    let (level, name, value) = if v6 {
        (libc::IPPROTO_IPV6, libc::IPV6_DONTFRAG, 1)
    } else {
        (
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_DO,
        )
    };
    // SAFETY: setsockopt with a valid fd and a pointer to a live c_int of the right size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            &value as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        tracing::debug!(error = %io::Error::last_os_error(), "could not set don't-fragment");
    }
}
