//! IP networks in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`; a bare address is one host).

use std::net::IpAddr;

/// An IPv4 or IPv6 network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The network address, IPv4 in the low 32 bits.
    network: u128,
    /// The prefix length.
    bits: u8,
    v4: bool,
}

impl Cidr {
    /// Parses `a.b.c.d/n`, `x:y::z/n` or a bare address. Host bits must be zero, so a
    /// mistyped `10.0.0.1/8` is an error rather than a silent `10.0.0.0/8`.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (addr, bits) = match text.split_once('/') {
            Some((addr, bits)) => (addr, Some(bits)),
            None => (text, None),
        };
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or network"))?;
        let width = width(ip);
        let bits = match bits {
            None => width,
            Some(b) => b
                .parse::<u8>()
                .ok()
                .filter(|&b| b <= width)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0-{width}"))?,
        };
        let cidr = Cidr {
            network: to_bits(ip),
            bits,
            v4: ip.is_ipv4(),
        };
        if cidr.network & !mask(bits, width) != 0 {
            return Err(format!("{text:?} has bits set after the /{bits} prefix"));
        }
        Ok(cidr)
    }

    /// Whether `ip` is in the network (an IPv4 address is never in an IPv6 network).
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.v4 && (to_bits(ip) ^ self.network) & mask(self.bits, width(ip)) == 0
    }
}

fn width(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

fn to_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u32::from(v4).into(),
        IpAddr::V6(v6) => v6.into(),
    }
}

/// The top `bits` of a `width`-bit address set.
fn mask(bits: u8, width: u8) -> u128 {
    if bits == 0 {
        return 0;
    }
    (u128::MAX << (width - bits)) & (u128::MAX >> (128 - width))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv4_networks() {
        let net = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(net.contains(ip("10.0.0.0")));
        assert!(net.contains(ip("10.255.255.255")));
        assert!(!net.contains(ip("11.0.0.0")));
        assert!(!net.contains(ip("9.255.255.255")));
        let net = Cidr::parse("192.168.1.128/25").unwrap();
        assert!(net.contains(ip("192.168.1.200")));
        assert!(!net.contains(ip("192.168.1.127")));
    }

    #[test]
    fn ipv6_networks() {
        let net = Cidr::parse("2001:db8::/32").unwrap();
        assert!(net.contains(ip("2001:db8:ffff::1")));
        assert!(!net.contains(ip("2001:db9::1")));
        assert!(Cidr::parse("::1/128").unwrap().contains(ip("::1")));
        assert!(!Cidr::parse("::1/128").unwrap().contains(ip("::2")));
    }

    #[test]
    fn bare_addresses_are_single_hosts() {
        let host = Cidr::parse("127.0.0.1").unwrap();
        assert!(host.contains(ip("127.0.0.1")));
        assert!(!host.contains(ip("127.0.0.2")));
        assert_eq!(Cidr::parse("::1").unwrap(), Cidr::parse("::1/128").unwrap());
    }

    #[test]
    fn zero_prefix_matches_its_whole_family() {
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains(ip("203.0.113.9"))
        );
        assert!(Cidr::parse("::/0").unwrap().contains(ip("2001:db8::1")));
        assert!(!Cidr::parse("0.0.0.0/0").unwrap().contains(ip("::1")));
        assert!(!Cidr::parse("::/0").unwrap().contains(ip("127.0.0.1")));
    }

    #[test]
    fn full_prefixes() {
        assert!(Cidr::parse("1.2.3.4/32").unwrap().contains(ip("1.2.3.4")));
        assert!(!Cidr::parse("1.2.3.4/32").unwrap().contains(ip("1.2.3.5")));
        assert!(Cidr::parse("1.2.3.0/31").unwrap().contains(ip("1.2.3.1")));
    }

    #[test]
    fn bad_networks_are_errors() {
        for bad in [
            "",
            "10.0.0/8",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0.0/x",
            "a.b",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            Cidr::parse("10.0.0.1/8").unwrap_err(),
            "\"10.0.0.1/8\" has bits set after the /8 prefix"
        );
        assert_eq!(
            Cidr::parse("10.0.0.0/40").unwrap_err(),
            "\"10.0.0.0/40\": the prefix length must be 0-32"
        );
    }
}
