//! coturn writes peer ranges as `FIRST-LAST` address ranges; turnpike's `[peers]` takes CIDR
//! blocks. This turns one into the shortest list of the other.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The CIDR blocks ("a.b.c.d/n", "x::/n") that cover exactly `first..=last`, or `None` when
/// the two are of different families or `first > last`. A block of one address is written
/// without a prefix length.
pub fn range_to_cidrs(first: IpAddr, last: IpAddr) -> Option<Vec<String>> {
    match (first, last) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let blocks = split(u128::from(u32::from(a)), u128::from(u32::from(b)), 32)?;
            Some(
                blocks
                    .into_iter()
                    .map(|(start, len)| {
                        let ip = Ipv4Addr::from(start as u32);
                        if len == 32 {
                            ip.to_string()
                        } else {
                            format!("{ip}/{len}")
                        }
                    })
                    .collect(),
            )
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let blocks = split(u128::from(a), u128::from(b), 128)?;
            Some(
                blocks
                    .into_iter()
                    .map(|(start, len)| {
                        let ip = Ipv6Addr::from(start);
                        if len == 128 {
                            ip.to_string()
                        } else {
                            format!("{ip}/{len}")
                        }
                    })
                    .collect(),
            )
        }
        _ => None,
    }
}

/// The aligned blocks (start, prefix length) covering `first..=last` in a space of `bits`
/// bits. At most 2 * bits blocks, so the loop is bounded.
fn split(first: u128, last: u128, bits: u32) -> Option<Vec<(u128, u32)>> {
    if first > last {
        return None;
    }
    let mut out = Vec::new();
    let mut start = first;
    loop {
        // The largest block aligned at `start` that does not pass `last`.
        let align = if start == 0 {
            bits
        } else {
            start.trailing_zeros().min(bits)
        };
        let mut size_log = align;
        while size_log > 0 {
            let span = if size_log >= 128 {
                u128::MAX
            } else {
                (1u128 << size_log) - 1
            };
            match start.checked_add(span) {
                Some(end) if end <= last => break,
                _ => size_log -= 1,
            }
        }
        out.push((start, bits - size_log));
        let span = if size_log >= 128 {
            u128::MAX
        } else {
            (1u128 << size_log) - 1
        };
        let end = start + span;
        if end >= last {
            return Some(out);
        }
        start = end + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(first: &str, last: &str) -> Option<Vec<String>> {
        range_to_cidrs(first.parse().unwrap(), last.parse().unwrap())
    }

    #[test]
    fn ranges_become_blocks() {
        assert_eq!(v("10.0.0.0", "10.255.255.255").unwrap(), ["10.0.0.0/8"]);
        assert_eq!(v("192.0.2.1", "192.0.2.1").unwrap(), ["192.0.2.1"]);
        assert_eq!(
            v("192.0.2.1", "192.0.2.6").unwrap(),
            ["192.0.2.1", "192.0.2.2/31", "192.0.2.4/31", "192.0.2.6"]
        );
        assert_eq!(v("0.0.0.0", "255.255.255.255").unwrap(), ["0.0.0.0/0"]);
        assert_eq!(
            v("172.16.0.0", "172.31.255.255").unwrap(),
            ["172.16.0.0/12"]
        );
        assert_eq!(
            v("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff").unwrap(),
            ["::/0"]
        );
        assert_eq!(
            v("fc00::", "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff").unwrap(),
            ["fc00::/7"]
        );
        assert_eq!(v("::1", "::1").unwrap(), ["::1"]);
    }

    #[test]
    fn bad_ranges_are_refused() {
        assert!(v("10.0.0.2", "10.0.0.1").is_none());
        assert!(v("10.0.0.1", "::1").is_none());
    }

    #[test]
    fn every_block_is_inside_and_the_union_is_exact() {
        // A few awkward ranges: count the addresses covered.
        for (a, b) in [
            (3u32, 1000u32),
            (1, 1),
            (0, 7),
            (5, 5),
            (4_000_000_000, u32::MAX),
        ] {
            let blocks = split(u128::from(a), u128::from(b), 32).unwrap();
            let mut next = u128::from(a);
            for (start, len) in blocks {
                assert_eq!(start, next);
                assert_eq!(start % (1u128 << (32 - len)), 0, "aligned");
                next = start + (1u128 << (32 - len));
            }
            assert_eq!(next, u128::from(b) + 1);
        }
    }
}
