//! Test support: a small MaxMind DB writer, so tests build their own GeoIP / ASN databases
//! (MaxMind DB File Format Specification 2.0: an IPv6 search tree of 32-bit records, 16 zero
//! bytes, the data section, then the metadata map after `\xAB\xCD\xEFMaxMind.com`). IPv4
//! networks live at `::a.b.c.d/(96 + len)`, where readers look for them.

use ipnet::IpNet;
use serde_json::Value;

#[derive(Clone, Copy)]
enum Rec {
    Empty,
    Node(u32),
    Data(u32),
}

/// An MMDB file of `database_type` holding each network's value (JSON objects become maps,
/// non-negative integers uint32 / uint64, other numbers doubles, strings UTF-8 strings).
/// Networks are inserted in order; a more specific one may follow a less specific one.
pub fn mmdb(database_type: &str, networks: &[(&str, Value)]) -> Vec<u8> {
    let mut nodes: Vec<[Rec; 2]> = vec![[Rec::Empty, Rec::Empty]];
    let mut data: Vec<u8> = Vec::new();
    for (net, value) in networks {
        let net: IpNet = net.parse().expect("test network");
        let (bits, len) = match net {
            IpNet::V4(n) => (
                u128::from(n.network().to_ipv6_compatible()),
                96 + u32::from(n.prefix_len()),
            ),
            IpNet::V6(n) => (u128::from(n.network()), u32::from(n.prefix_len())),
        };
        let offset = data.len() as u32;
        encode(value, &mut data);
        let mut node = 0usize;
        for depth in 0..len {
            let bit = ((bits >> (127 - depth)) & 1) as usize;
            if depth + 1 == len {
                nodes[node][bit] = Rec::Data(offset);
                break;
            }
            node = match nodes[node][bit] {
                Rec::Node(n) => n as usize,
                // Push a less specific network's data down both branches.
                r @ (Rec::Empty | Rec::Data(_)) => {
                    nodes.push([r, r]);
                    let n = nodes.len() - 1;
                    nodes[node][bit] = Rec::Node(n as u32);
                    n
                }
            };
        }
    }
    let count = nodes.len() as u32;
    let mut out = Vec::with_capacity(nodes.len() * 8 + 16 + data.len() + 256);
    for n in &nodes {
        for r in n {
            let v = match *r {
                Rec::Empty => count,
                Rec::Node(i) => i,
                Rec::Data(off) => count + 16 + off,
            };
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
    out.extend_from_slice(&[0u8; 16]);
    out.extend_from_slice(&data);
    out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
    // The metadata's integers have fixed widths (uint16 / uint32 / uint64): readers check.
    control(&mut out, 7, 9);
    let uint = |out: &mut Vec<u8>, key: &str, ty: u8, v: u64| {
        encode(&Value::String(key.into()), out);
        let bytes = v.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        control(out, ty, 8 - skip);
        out.extend_from_slice(&bytes[skip..]);
    };
    uint(&mut out, "binary_format_major_version", 5, 2);
    uint(&mut out, "binary_format_minor_version", 5, 0);
    uint(&mut out, "build_epoch", 9, 1_795_392_000);
    uint(&mut out, "ip_version", 5, 6);
    uint(&mut out, "node_count", 6, u64::from(count));
    uint(&mut out, "record_size", 5, 32);
    for (k, v) in [
        ("database_type", Value::String(database_type.into())),
        (
            "description",
            serde_json::json!({"en": "natlake test database"}),
        ),
        ("languages", serde_json::json!(["en"])),
    ] {
        encode(&Value::String(k.into()), &mut out);
        encode(&v, &mut out);
    }
    out
}

/// Data values: integers as uint32 (uint64 when larger), which readers widen as needed.
fn encode(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::String(s) => {
            control(out, 2, s.len());
            out.extend_from_slice(s.as_bytes());
        }
        Value::Bool(b) => control(out, 14, usize::from(*b)),
        Value::Number(n) => match (n.as_u64(), n.as_f64()) {
            (Some(u), _) => {
                let ty = if u <= u64::from(u32::MAX) { 6 } else { 9 };
                let bytes = u.to_be_bytes();
                let skip = bytes.iter().take_while(|b| **b == 0).count();
                control(out, ty, 8 - skip);
                out.extend_from_slice(&bytes[skip..]);
            }
            (None, Some(f)) => {
                control(out, 3, 8);
                out.extend_from_slice(&f.to_be_bytes());
            }
            _ => panic!("test value {n}"),
        },
        Value::Array(a) => {
            control(out, 11, a.len());
            a.iter().for_each(|x| encode(x, out));
        }
        Value::Object(m) => {
            control(out, 7, m.len());
            for (k, x) in m {
                control(out, 2, k.len());
                out.extend_from_slice(k.as_bytes());
                encode(x, out);
            }
        }
        Value::Null => panic!("MMDB has no null"),
    }
}

/// Control byte(s): type in the top three bits (extended types > 7 in a second byte), size in
/// the low five with 29 / 30 / 31 announcing 1 / 2 / 3 more size bytes.
fn control(out: &mut Vec<u8>, ty: u8, size: usize) {
    let (first_ty, ext) = if ty > 7 {
        (0, Some(ty - 7))
    } else {
        (ty, None)
    };
    let (low, extra): (u8, Vec<u8>) = match size {
        0..29 => (size as u8, vec![]),
        29..285 => (29, vec![(size - 29) as u8]),
        285..65_821 => (30, ((size - 285) as u16).to_be_bytes().to_vec()),
        _ => (31, ((size - 65_821) as u32).to_be_bytes()[1..].to_vec()),
    };
    out.push((first_ty << 5) | low);
    if let Some(e) = ext {
        out.push(e);
    }
    out.extend_from_slice(&extra);
}
