//! `@ipMatch` / `@ipMatchFromFile`: addresses and CIDR blocks, IPv4 and IPv6.

use std::net::IpAddr;
use std::path::Path;

/// One address block: the network as a 128-bit number (IPv4 mapped into `::ffff:0:0/96`) and
/// its prefix length in that space.
#[derive(Debug, Clone, Copy)]
struct Block {
    network: u128,
    prefix: u32,
}

impl Block {
    /// Parses `a.b.c.d`, `a.b.c.d/n`, `x::y` or `x::y/n`.
    fn parse(text: &str) -> Result<Block, String> {
        let (addr, len) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("invalid IP address {text:?}"))?;
        let (bits, max, offset) = match addr {
            IpAddr::V4(v4) => (u128::from(v4.to_ipv6_mapped()), 32, 96),
            IpAddr::V6(v6) => (u128::from(v6), 128, 0),
        };
        let prefix = match len {
            Some(l) => match l.parse::<u32>() {
                Ok(n) if n <= max => n + offset,
                _ => return Err(format!("invalid prefix length in {text:?}")),
            },
            None => 128,
        };
        Ok(Block {
            network: bits & mask(prefix),
            prefix,
        })
    }

    /// Whether `addr` (as 128 bits) is in the block.
    fn contains(&self, addr: u128) -> bool {
        addr & mask(self.prefix) == self.network
    }
}

/// The netmask of a 128-bit prefix.
fn mask(prefix: u32) -> u128 {
    if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - prefix)
    }
}

/// The address blocks of one `@ipMatch` operator.
#[derive(Debug)]
pub(super) struct IpSet(Vec<Block>);

impl IpSet {
    /// From `@ipMatch`'s argument: addresses or CIDR blocks separated by commas (or spaces).
    pub(super) fn parse(list: &str) -> Result<IpSet, String> {
        let blocks = list
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(Block::parse)
            .collect::<Result<Vec<_>, _>>()?;
        if blocks.is_empty() {
            return Err("@ipMatch needs at least one address".into());
        }
        Ok(IpSet(blocks))
    }

    /// From files (space-separated names, relative to `rule_dir`): one block per line, blank
    /// lines and `#` comments skipped.
    pub(super) fn from_files(names: &str, rule_dir: &Path) -> Result<IpSet, String> {
        let mut list = String::new();
        for name in names.split_whitespace() {
            let path = rule_dir.join(name);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            for line in text.lines().map(str::trim) {
                if !line.is_empty() && !line.starts_with('#') {
                    list.push_str(line);
                    list.push(',');
                }
            }
        }
        IpSet::parse(&list)
    }

    /// Whether `value` is an address inside one of the blocks (IPv4-mapped IPv6 addresses
    /// count as IPv4).
    pub(super) fn contains(&self, value: &[u8]) -> bool {
        let Some(addr) = std::str::from_utf8(value)
            .ok()
            .and_then(|s| s.trim().parse::<IpAddr>().ok())
        else {
            return false;
        };
        let bits = match addr {
            IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
            IpAddr::V6(v6) => u128::from(v6),
        };
        self.0.iter().any(|b| b.contains(bits))
    }
}
