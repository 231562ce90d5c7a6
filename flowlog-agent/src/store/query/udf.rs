//! SQL functions for addresses, registered in every query's session:
//!
//! - `in_cidr(addr, cidr)`: whether an address lies in a network
//!   (`in_cidr(srcaddr, '10.0.0.0/8')`), IPv4 or IPv6; null when either
//!   side is null or not an address/network.
//! - `cidr_network(addr, v4_bits, v6_bits)`: the network an address is in,
//!   as `10.0.1.0/24` or `2001:db8::/64` (what a traffic matrix by
//!   network groups on when the region table names none).
//!
//! DataFusion has no address type; records keep addresses as text, so
//! these parse them (once per distinct network literal).

use std::{net::IpAddr, sync::Arc};

use datafusion::{
    arrow::{
        array::{Array, ArrayRef, BooleanArray, Int64Array, StringArray},
        datatypes::DataType,
    },
    common::{DataFusionError, cast::as_string_array},
    logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf},
};

/// A network: an address and a prefix length within its family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub bits: u8,
}

impl Cidr {
    /// The network holding `addr` with `bits` of prefix (clamped to the
    /// family's width).
    pub fn of(addr: IpAddr, bits: u8) -> Self {
        let bits = bits.min(width(addr));
        Self {
            addr: mask(addr, bits),
            bits,
        }
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        width(addr) == width(self.addr) && mask(addr, self.bits) == self.addr
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;

    /// `10.0.0.0/8`, `2001:db8::/32`, or a bare address (a host network).
    /// Host bits set below the prefix are refused: `10.0.0.1/8` is a typo
    /// more often than a wish.
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, bits) = match s.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an address or a network like 10.0.0.0/8"))?;
        let bits = match bits {
            None => width(addr),
            Some(b) => b
                .parse::<u8>()
                .ok()
                .filter(|b| *b <= width(addr))
                .ok_or_else(|| format!("prefix length in {s:?} must be 0 to {}", width(addr)))?,
        };
        let net = Self::of(addr, bits);
        if net.addr != addr {
            return Err(format!("{s:?} has host bits set; did you mean {net}?"));
        }
        Ok(net)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.bits)
    }
}

const fn width(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn mask(addr: IpAddr, bits: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let m = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => {
            let m = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

fn strings<'a>(a: &'a ArrayRef, name: &str) -> Result<&'a StringArray, DataFusionError> {
    as_string_array(a).map_err(|_| DataFusionError::Plan(format!("{name} takes text arguments")))
}

/// `in_cidr(addr, cidr)`.
fn in_cidr(args: &[ColumnarValue]) -> Result<ColumnarValue, DataFusionError> {
    let arrays = ColumnarValue::values_to_arrays(args)?;
    let [addrs, nets] = arrays.as_slice() else {
        return Err(DataFusionError::Plan("in_cidr takes (address, network)".into()));
    };
    let (addrs, nets) = (strings(addrs, "in_cidr")?, strings(nets, "in_cidr")?);
    let mut last: Option<(&str, Option<Cidr>)> = None;
    let out: BooleanArray = (0..addrs.len())
        .map(|i| {
            if addrs.is_null(i) || nets.is_null(i) {
                return None;
            }
            let text = nets.value(i);
            let net = match last {
                Some((t, n)) if t == text => n,
                _ => {
                    let n = text.parse::<Cidr>().ok();
                    last = Some((text, n));
                    n
                }
            }?;
            let addr: IpAddr = addrs.value(i).parse().ok()?;
            Some(net.contains(addr))
        })
        .collect();
    Ok(ColumnarValue::Array(Arc::new(out)))
}

/// `cidr_network(addr, v4_bits, v6_bits)`.
fn cidr_network(args: &[ColumnarValue]) -> Result<ColumnarValue, DataFusionError> {
    let arrays = ColumnarValue::values_to_arrays(args)?;
    let [addrs, v4, v6] = arrays.as_slice() else {
        return Err(DataFusionError::Plan(
            "cidr_network takes (address, IPv4 prefix length, IPv6 prefix length)".into(),
        ));
    };
    let addrs = strings(addrs, "cidr_network")?;
    let bits = |a: &ArrayRef| {
        a.as_any()
            .downcast_ref::<Int64Array>()
            .cloned()
            .ok_or_else(|| DataFusionError::Plan("cidr_network takes integer prefix lengths".into()))
    };
    let (v4, v6) = (bits(v4)?, bits(v6)?);
    let out: StringArray = (0..addrs.len())
        .map(|i| {
            if addrs.is_null(i) {
                return None;
            }
            let addr: IpAddr = addrs.value(i).parse().ok()?;
            let len = match addr {
                IpAddr::V4(_) if !v4.is_null(i) => v4.value(i),
                IpAddr::V6(_) if !v6.is_null(i) => v6.value(i),
                _ => return None,
            };
            let len = u8::try_from(len.clamp(0, 128)).unwrap_or(128);
            Some(Cidr::of(addr, len).to_string())
        })
        .collect();
    Ok(ColumnarValue::Array(Arc::new(out)))
}

/// Every function of this module, for a session to register.
pub fn functions() -> Vec<ScalarUDF> {
    vec![
        create_udf(
            "in_cidr",
            vec![DataType::Utf8, DataType::Utf8],
            DataType::Boolean,
            Volatility::Immutable,
            Arc::new(in_cidr),
        ),
        create_udf(
            "cidr_network",
            vec![DataType::Utf8, DataType::Int64, DataType::Int64],
            DataType::Utf8,
            Volatility::Immutable,
            Arc::new(cidr_network),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_parse_contain_and_print() {
        let net: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(
            !net.contains("::ffff:10.1.0.1".parse().unwrap()),
            "families never mix"
        );
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
        assert_eq!("192.0.2.7".parse::<Cidr>().unwrap().to_string(), "192.0.2.7/32");
        assert_eq!("0.0.0.0/0".parse::<Cidr>().unwrap().bits, 0);
        assert!(
            "0.0.0.0/0"
                .parse::<Cidr>()
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        let err = "10.0.0.1/8".parse::<Cidr>().unwrap_err();
        assert!(err.contains("10.0.0.0/8"), "{err}");
        for bad in [
            "10.0.0.0/33",
            "2001:db8::/129",
            "10.0.0/8",
            "x",
            "10.0.0.0/-1",
            "",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        assert_eq!(
            Cidr::of("2001:db8:1:2:3::9".parse().unwrap(), 64).to_string(),
            "2001:db8:1:2::/64"
        );
    }
}
