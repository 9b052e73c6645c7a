//! IP addresses: the WHATWG IPv4 host parser (every spelling a browser or an HTTP client accepts:
//! decimal, hex, octal, short forms), IPv6 with zone ids, the built-in address classes that are
//! denied by default, and CIDR blocks.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use super::DenyReason;

/// What the WHATWG IPv4 parser makes of a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum V4 {
    /// Not an IPv4 address: the last label is not a number, so the host is a domain.
    NotIpv4,
    /// An IPv4 address, in whatever spelling.
    Addr(Ipv4Addr),
    /// Looks like an IPv4 address (ends in a number) but is not a valid one: browsers fail the URL.
    Invalid,
}

/// One WHATWG IPv4 number: `0x…` hex, `0…` octal, else decimal. `None` if not a number; values
/// too large for a u64 saturate (they are rejected later anyway).
fn ipv4_number(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let (digits, radix) = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (h, 16)
    } else if s.len() > 1 && s.starts_with('0') {
        (&s[1..], 8)
    } else {
        (s, 10)
    };
    if digits.is_empty() {
        return Some(0);
    }
    if !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    Some(u64::from_str_radix(digits, radix).unwrap_or(u64::MAX))
}

/// The WHATWG "ends in a number" check followed by the IPv4 parser.
pub(crate) fn parse_ipv4(host: &str) -> V4 {
    let trimmed = match host.strip_suffix('.') {
        Some("") | None => host,
        Some(t) => t,
    };
    let last = trimmed.rsplit('.').next().unwrap_or("");
    let ends_in_number = (!last.is_empty() && last.bytes().all(|b| b.is_ascii_digit())) || ipv4_number(last).is_some();
    if !ends_in_number {
        return V4::NotIpv4;
    }
    let mut nums = [0u64; 4];
    let mut n = 0;
    for part in trimmed.split('.') {
        if n == 4 {
            return V4::Invalid;
        }
        match ipv4_number(part) {
            Some(v) => nums[n] = v,
            None => return V4::Invalid,
        }
        n += 1;
    }
    if nums[..n - 1].iter().any(|&v| v > 255) {
        return V4::Invalid;
    }
    let last_max = 1u64 << (8 * (5 - n));
    if nums[n - 1] >= last_max {
        return V4::Invalid;
    }
    let mut addr = nums[n - 1];
    for (i, v) in nums[..n - 1].iter().enumerate() {
        addr += v << (8 * (3 - i));
    }
    match u32::try_from(addr) {
        Ok(a) => V4::Addr(Ipv4Addr::from(a)),
        Err(_) => V4::Invalid,
    }
}

/// An IPv6 literal as found between brackets, with an optional zone id (`%25eth0` as RFC 6874
/// writes it, or a bare `%eth0`). Returns the address and whether a zone was present.
pub(crate) fn parse_ipv6(s: &str) -> Option<(Ipv6Addr, bool)> {
    let (addr, zoned) = match s.find('%') {
        Some(i) => {
            let zone = s[i + 1..].strip_prefix("25").unwrap_or(&s[i + 1..]);
            if zone.is_empty() || !zone.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b)) {
                return None;
            }
            (&s[..i], true)
        }
        None => (s, false),
    };
    Ipv6Addr::from_str(addr).ok().map(|a| (a, zoned))
}

/// The IPv4 address an IPv6 address carries, for the forms that reach it: IPv4-mapped
/// (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`, deprecated but still parsed), IPv4-translated
/// (`::ffff:0:a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`) and 6to4 (`2002:AABB:CCDD::`).
pub(crate) fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let tail = || Ipv4Addr::from((u32::from(s[6]) << 16) | u32::from(s[7]));
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] | [0, 0, 0, 0, 0xffff, 0, _, _] | [0x64, 0xff9b, 0, 0, 0, 0, _, _] => {
            Some(tail())
        }
        // `::` and `::1` (and `::0.0.x.x`) are not IPv4-compatible addresses.
        [0, 0, 0, 0, 0, 0, hi, _] if hi != 0 => Some(tail()),
        [0x2002, a, b, ..] => Some(Ipv4Addr::from((u32::from(a) << 16) | u32::from(b))),
        _ => None,
    }
}

/// Cloud metadata and host-platform endpoints, denied whatever `allow_private` says.
///
/// - `169.254.169.254`: AWS, GCP, Azure, Oracle, DigitalOcean, OpenStack, Hetzner… instance metadata
/// - `169.254.170.2`: AWS ECS task metadata and credentials
/// - `168.63.129.16`: Azure WireServer (a public address on the host)
/// - `100.100.100.200`: Alibaba Cloud metadata
/// - `192.0.0.192`: Oracle Cloud (classic) metadata
/// - `fd00:ec2::254`: AWS instance metadata over IPv6
pub const METADATA_IPS: [IpAddr; 6] = [
    IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)),
    IpAddr::V4(Ipv4Addr::new(169, 254, 170, 2)),
    IpAddr::V4(Ipv4Addr::new(168, 63, 129, 16)),
    IpAddr::V4(Ipv4Addr::new(100, 100, 100, 200)),
    IpAddr::V4(Ipv4Addr::new(192, 0, 0, 192)),
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)),
];

/// The built-in class an address falls in, if it is denied by default.
pub(crate) fn classify(ip: IpAddr) -> Option<DenyReason> {
    if METADATA_IPS.contains(&ip) {
        return Some(DenyReason::Metadata);
    }
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_v4(v6) {
                if let Some(r) = classify(IpAddr::V4(v4)) {
                    return Some(r);
                }
            }
            let s = v6.segments();
            if v6.is_unspecified() {
                Some(DenyReason::Unspecified)
            } else if v6.is_loopback() {
                Some(DenyReason::Loopback)
            } else if s[0] & 0xffc0 == 0xfe80 {
                Some(DenyReason::LinkLocal)
            } else if s[0] & 0xfe00 == 0xfc00 // unique local fc00::/7
                || s[0] & 0xffc0 == 0xfec0 // site-local fec0::/10 (deprecated)
                || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1)
            // local-use NAT64 64:ff9b:1::/48
            {
                Some(DenyReason::PrivateAddress)
            } else if s[0] & 0xff00 == 0xff00 {
                Some(DenyReason::Reserved)
            } else {
                None
            }
        }
    }
}

fn classify_v4(v4: Ipv4Addr) -> Option<DenyReason> {
    let [a, b, _, _] = v4.octets();
    if a == 0 {
        // 0.0.0.0/8 "this network": Linux connects 0.0.0.0 to the local host.
        Some(DenyReason::Unspecified)
    } else if a == 127 {
        Some(DenyReason::Loopback)
    } else if a == 10
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 168)
        || (a == 100 && (64..128).contains(&b))
    {
        Some(DenyReason::PrivateAddress)
    } else if a == 169 && b == 254 {
        Some(DenyReason::LinkLocal)
    } else if a >= 224 {
        // Multicast 224/4, reserved 240/4, broadcast 255.255.255.255.
        Some(DenyReason::Reserved)
    } else {
        None
    }
}

/// A CIDR block; its host bits are zero (a block with host bits set is refused at compile time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    len: u8,
}

impl Cidr {
    /// Whether `ip` is inside the block. An IPv6 address carrying an IPv4 address (mapped, NAT64…)
    /// is also tested as that IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => mask_eq(u128::from(u32::from(n)), u128::from(u32::from(a)), 32, self.len),
            (IpAddr::V6(n), IpAddr::V6(a)) => mask_eq(u128::from(n), u128::from(a), 128, self.len),
            (IpAddr::V4(_), IpAddr::V6(a)) => embedded_v4(a).is_some_and(|v4| self.contains(IpAddr::V4(v4))),
            (IpAddr::V6(_), IpAddr::V4(a)) => self.contains(IpAddr::V6(a.to_ipv6_mapped())),
        }
    }

    /// Whether every address of this block lies in one built-in denied class (used to hint that
    /// `allow_private` is needed).
    pub(crate) fn builtin_class(&self) -> Option<DenyReason> {
        let first = classify(self.net)?;
        let last = match self.net {
            IpAddr::V4(n) => {
                let host = u32::MAX.checked_shr(u32::from(self.len)).unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(n) | host))
            }
            IpAddr::V6(n) => {
                let host = u128::MAX.checked_shr(u32::from(self.len)).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(n) | host))
            }
        };
        (classify(last) == Some(first)).then_some(first)
    }
}

fn mask_eq(net: u128, addr: u128, bits: u8, len: u8) -> bool {
    if len == 0 {
        return true;
    }
    let shift = u32::from(bits - len);
    (net >> shift) == (addr >> shift)
}

impl FromStr for Cidr {
    type Err = String;

    /// `a.b.c.d/n`, `v6/n`, or a bare address (a /32 or /128). Only the canonical spellings: a
    /// policy is written by people, not attackers.
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let net = IpAddr::from_str(addr.trim_start_matches('[').trim_end_matches(']'))
            .map_err(|_| format!("`{s}` is not a CIDR block; write it as `10.0.0.0/8` or `fd00::/8`"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(l) => match l.parse::<u8>() {
                Ok(v) if v <= max => v,
                _ => return Err(format!("`{s}`: the prefix length must be a number from 0 to {max}")),
            },
        };
        let canonical = match net {
            IpAddr::V4(n) => {
                let keep = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
                IpAddr::V4(Ipv4Addr::from(u32::from(n) & keep))
            }
            IpAddr::V6(n) => {
                let keep = if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) };
                IpAddr::V6(Ipv6Addr::from(u128::from(n) & keep))
            }
        };
        if canonical != net {
            return Err(format!("`{s}` has host bits set; did you mean `{canonical}/{len}`?"));
        }
        Ok(Cidr { net, len })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> V4 {
        parse_ipv4(s)
    }

    #[test]
    fn whatwg_ipv4_spellings() {
        let meta = V4::Addr(Ipv4Addr::new(169, 254, 169, 254));
        for s in [
            "169.254.169.254",
            "169.254.169.254.",
            "2852039166",
            "0xa9fea9fe",
            "0XA9FEA9FE",
            "0xa9.0xfe.0xa9.0xfe",
            "0251.0376.0251.0376",
            "0251.0376.43518",
            "169.16689662",
            "0xa9.254.0251.0xfe",
        ] {
            assert_eq!(v4(s), meta, "{s}");
        }
        assert_eq!(v4("127.1"), V4::Addr(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(v4("10.1"), V4::Addr(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(v4("0"), V4::Addr(Ipv4Addr::new(0, 0, 0, 0)));
        assert_eq!(v4("0x"), V4::Addr(Ipv4Addr::new(0, 0, 0, 0)));
        assert_eq!(v4("127.000.000.001"), V4::Addr(Ipv4Addr::new(127, 0, 0, 1)));
        for s in ["1.2.3.4.5", "256.1.1.1", "08", "1..2", "4294967296", "0x1.0x100.1.1", "99999999999999999999999"] {
            assert_eq!(v4(s), V4::Invalid, "{s}");
        }
        for s in ["example.com", "1.2.3.com", "0xg", "localhost", ".", "a1"] {
            assert_eq!(v4(s), V4::NotIpv4, "{s}");
        }
    }

    #[test]
    fn ipv6_forms_and_classes() {
        let p = |s: &str| parse_ipv6(s).map(|(a, _)| classify(IpAddr::V6(a)));
        assert_eq!(p("::ffff:169.254.169.254"), Some(Some(DenyReason::Metadata)));
        assert_eq!(p("::ffff:a9fe:a9fe"), Some(Some(DenyReason::Metadata)));
        assert_eq!(p("64:ff9b::a9fe:a9fe"), Some(Some(DenyReason::Metadata)));
        assert_eq!(p("::127.0.0.1"), Some(Some(DenyReason::Loopback)));
        assert_eq!(p("fe80::1%25eth0"), Some(Some(DenyReason::LinkLocal)));
        assert_eq!(p("fe80::1%eth0"), Some(Some(DenyReason::LinkLocal)));
        assert_eq!(p("FD00:EC2::254"), Some(Some(DenyReason::Metadata)));
        assert_eq!(p("fd12::1"), Some(Some(DenyReason::PrivateAddress)));
        assert_eq!(p("::"), Some(Some(DenyReason::Unspecified)));
        assert_eq!(p("ff02::1"), Some(Some(DenyReason::Reserved)));
        assert_eq!(p("2606:4700::1111"), Some(None));
        assert_eq!(p("fe80::1%"), None);
        assert_eq!(p("1::2::3"), None);
    }

    #[test]
    fn cidrs() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap_or_else(|e| panic!("{e}"));
        assert!(c.contains("10.2.3.4".parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))));
        assert!(c.contains(IpAddr::V6("::ffff:10.9.9.9".parse().unwrap_or(Ipv6Addr::UNSPECIFIED))));
        assert!(!c.contains(IpAddr::V4(Ipv4Addr::new(11, 0, 0, 1))));
        assert_eq!(c.builtin_class(), Some(DenyReason::PrivateAddress));
        assert!("10.0.0.1/8".parse::<Cidr>().is_err_and(|e| e.contains("10.0.0.0/8")));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("0xa.0.0.0/8".parse::<Cidr>().is_err());
        let all: Cidr = "0.0.0.0/0".parse().unwrap_or_else(|e| panic!("{e}"));
        assert!(all.contains(IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8))));
        assert_eq!(all.builtin_class(), None);
        let v6: Cidr = "2001:db8::/32".parse().unwrap_or_else(|e| panic!("{e}"));
        assert!(v6.contains("2001:db8::1".parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))));
    }
}
