//! The bare UDP forwarder: the ceiling a relay is measured against. Shaped like a TURN relay
//! (a listener, one upstream socket per client, replies routed back) but with no protocol at
//! all: recvmmsg, a hash lookup, sendmmsg.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use turnpike::net::batch::{RecvBatch, SendBatch};
use turnpike::net::socket::{UdpOptions, bind_udp};

const LISTENER: Token = Token(usize::MAX - 1);

/// Runs `workers` forwarding threads (SO_REUSEPORT) on `listen`, forwarding to `to` from
/// upstream sockets on `relay_ip` (default: the listener's address). Never returns.
pub fn run(
    listen: SocketAddr,
    to: SocketAddr,
    workers: usize,
    relay_ip: Option<IpAddr>,
) -> anyhow::Result<()> {
    let workers = if workers == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        workers
    };
    let mut threads = Vec::new();
    for _ in 0..workers {
        let sock = bind_udp(
            listen,
            UdpOptions {
                reuse_port: true,
                buffer_bytes: 4 << 20,
                dont_fragment: false,
            },
        )?;
        let relay_ip = relay_ip.unwrap_or(listen.ip());
        threads.push(std::thread::spawn(move || worker(sock, to, relay_ip)));
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

fn worker(sock: std::net::UdpSocket, to: SocketAddr, relay_ip: IpAddr) -> anyhow::Result<()> {
    let mut poll = Poll::new()?;
    let mut listener = UdpSocket::from_std(sock);
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut by_client: HashMap<SocketAddr, usize> = HashMap::new();
    let mut upstream: Vec<(UdpSocket, SocketAddr)> = Vec::new();
    let mut events = Events::with_capacity(1024);
    let mut inb = RecvBatch::new(64, 2048, 0);
    let mut out = SendBatch::new(64, 2048);
    loop {
        poll.poll(&mut events, None)?;
        for ev in events.iter() {
            if ev.token() == LISTENER {
                while let Ok(n) = inb.recv(listener.as_raw_fd()) {
                    let mut last_fd = None;
                    for i in 0..n {
                        let (slot, len, from) = inb.slot(i);
                        let Some(from) = from else { continue };
                        let idx = match by_client.get(&from) {
                            Some(&i) => i,
                            None => {
                                let s = bind_udp(
                                    SocketAddr::new(relay_ip, 0),
                                    UdpOptions {
                                        reuse_port: false,
                                        buffer_bytes: 1 << 20,
                                        dont_fragment: false,
                                    },
                                )?;
                                let mut s = UdpSocket::from_std(s);
                                poll.registry().register(
                                    &mut s,
                                    Token(upstream.len()),
                                    Interest::READABLE,
                                )?;
                                upstream.push((s, from));
                                by_client.insert(from, upstream.len() - 1);
                                upstream.len() - 1
                            }
                        };
                        let fd = upstream[idx].0.as_raw_fd();
                        if last_fd.is_some_and(|l| l != fd) || out.is_full() {
                            out.flush(last_fd.unwrap_or(fd));
                        }
                        last_fd = Some(fd);
                        out.push(&slot[..len], to);
                    }
                    if let Some(fd) = last_fd {
                        out.flush(fd);
                    }
                    if n < inb.capacity() {
                        break;
                    }
                }
            } else {
                let idx = ev.token().0;
                let client = upstream[idx].1;
                while let Ok(n) = inb.recv(upstream[idx].0.as_raw_fd()) {
                    for i in 0..n {
                        let (slot, len, _) = inb.slot(i);
                        out.push(&slot[..len], client);
                    }
                    out.flush(listener.as_raw_fd());
                    if n < inb.capacity() {
                        break;
                    }
                }
            }
        }
    }
}
