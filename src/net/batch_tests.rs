//! Batched UDP I/O over loopback.

use super::*;
use std::os::fd::AsRawFd;

#[test]
fn batches_round_trip_over_loopback() {
    let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    b.set_nonblocking(true).unwrap();
    let mut out = SendBatch::new(8, 100);
    for i in 0..5u8 {
        assert!(out.push(&[i; 10], b.local_addr().unwrap()));
    }
    assert_eq!(out.flush(a.as_raw_fd()), 5);
    let mut inb = RecvBatch::new(8, 64, 16);
    let mut got = 0;
    for _ in 0..100 {
        match inb.recv(b.as_raw_fd()) {
            Ok(n) => {
                for i in 0..n {
                    let (slot, len, from) = inb.slot(i);
                    assert_eq!(len, 10);
                    assert_eq!(&slot[16..26], &[got as u8; 10]);
                    assert_eq!(from, Some(a.local_addr().unwrap()));
                    got += 1;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(std::time::Duration::from_millis(5))
            }
            Err(e) => panic!("{e}"),
        }
        if got == 5 {
            break;
        }
    }
    assert_eq!(got, 5);
}

#[test]
fn runs_of_equal_datagrams_arrive_whole_and_in_order() {
    let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut out = SendBatch::new(16, 2000);
    let sizes = [100, 100, 100, 40, 100, 1500, 1500, 7];
    for (i, &n) in sizes.iter().enumerate() {
        let to = if i == 4 {
            c.local_addr().unwrap()
        } else {
            b.local_addr().unwrap()
        };
        assert!(out.push(&vec![i as u8; n], to));
    }
    assert_eq!(out.flush(a.as_raw_fd()), sizes.len());
    b.set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .unwrap();
    c.set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .unwrap();
    let mut buf = [0u8; 2000];
    for (i, &n) in sizes.iter().enumerate() {
        let sock = if i == 4 { &c } else { &b };
        let (len, _) = sock.recv_from(&mut buf).unwrap();
        assert_eq!((len, buf[0]), (n, i as u8), "datagram {i}");
    }
}

#[test]
fn one_destinations_error_drops_only_its_own_datagrams_and_counts_them() {
    let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    b.set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .unwrap();
    // An IPv6 destination on an IPv4 socket: the kernel refuses each such datagram.
    let bad: SocketAddr = "[2001:db8::1]:9".parse().unwrap();
    for gso in [true, false] {
        let mut out = SendBatch::new(32, 100);
        out.gso = gso;
        let mut good = 0u8;
        for i in 0..24u8 {
            if i % 2 == 0 {
                assert!(out.push(&[i; 10], bad));
            } else {
                assert!(out.push(&[i; 10], b.local_addr().unwrap()));
                good += 1;
            }
        }
        assert_eq!(out.flush(a.as_raw_fd()), good as usize, "gso {gso}");
        assert_eq!(out.take_dropped(), 12, "gso {gso}");
        assert_eq!(out.take_dropped(), 0);
        let mut buf = [0u8; 100];
        for i in (0..24u8).filter(|i| i % 2 == 1) {
            let (len, _) = b.recv_from(&mut buf).unwrap();
            assert_eq!((len, buf[0]), (10, i), "gso {gso}");
        }
    }
}

#[test]
fn kernel_receive_timestamps_are_collected() {
    let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    enable_rx_timestamps(b.as_raw_fd()).unwrap();
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    a.send_to(b"x", b.local_addr().unwrap()).unwrap();
    let mut inb = RecvBatch::new(4, 64, 0).with_timestamps();
    let mut got = 0;
    for _ in 0..200 {
        if let Ok(n) = inb.recv(b.as_raw_fd()) {
            got = n;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(got, 1);
    let stamp = inb.timestamp(0).expect("a timestamp");
    assert!(
        stamp >= before - std::time::Duration::from_millis(1),
        "{stamp:?} < {before:?}"
    );
    assert!(stamp < before + std::time::Duration::from_secs(5));
    assert_eq!(
        RecvBatch::new(1, 64, 0).timestamp(0),
        None,
        "none unless asked"
    );
}

#[test]
fn sockaddr_round_trips() {
    for a in ["192.0.2.1:5", "[2001:db8::1]:65535"] {
        let addr: SocketAddr = a.parse().unwrap();
        assert_eq!(from_sockaddr(&to_sockaddr(addr).0), Some(addr));
    }
}

#[test]
fn held_slots_are_sent_from_in_place_and_skipped_by_later_receives() {
    let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    b.set_nonblocking(true).unwrap();
    c.set_nonblocking(true).unwrap();
    let mut inb = RecvBatch::new(4, 64, 8).with_spare(4);
    let receive = |inb: &mut RecvBatch, want: usize| {
        for _ in 0..200 {
            match inb.recv(b.as_raw_fd()) {
                Ok(n) => {
                    assert_eq!(n, want);
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                }
                Err(e) => panic!("{e}"),
            }
        }
        panic!("nothing received");
    };
    for i in 0..4u8 {
        a.send_to(&[i; 10], b.local_addr().unwrap()).unwrap();
    }
    receive(&mut inb, 4);
    // Hold every datagram and queue it from where it lies, 8 bytes in (offset 8).
    let mut out = SendBatch::borrowing(8);
    let mut held = Vec::new();
    for i in 0..4 {
        let start = inb.slot_start(i) + 8;
        held.push(inb.hold(i));
        assert!(out.push_ref(start, 10, c.local_addr().unwrap()));
    }
    // A second receive lands in the spare slots, leaving the held ones alone.
    for i in 10..14u8 {
        a.send_to(&[i; 10], b.local_addr().unwrap()).unwrap();
    }
    receive(&mut inb, 4);
    for i in 0..4 {
        assert!(
            !held.contains(&inb.hold(i)),
            "a held slot was received into"
        );
    }
    // Out of bounds is dropped and counted, never read.
    assert!(out.push_ref(inb.buffer().len() - 4, 10, c.local_addr().unwrap()));
    assert_eq!(out.flush_from(a.as_raw_fd(), inb.buffer()), 4);
    assert_eq!(out.take_dropped(), 1);
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    for _ in 0..200 {
        match c.recv(&mut buf) {
            Ok(n) => got.push(buf[..n].to_vec()),
            Err(_) if got.len() < 4 => std::thread::sleep(std::time::Duration::from_millis(5)),
            Err(_) => break,
        }
    }
    let want: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 10]).collect();
    assert_eq!(got, want);
    // Every slot is held now: a receive finds no room, until slots are released.
    assert_eq!(
        inb.recv(b.as_raw_fd()).unwrap_err().kind(),
        io::ErrorKind::WouldBlock
    );
    for slot in held {
        inb.release(slot);
    }
    a.send_to(&[9; 10], b.local_addr().unwrap()).unwrap();
    receive(&mut inb, 1);
}
