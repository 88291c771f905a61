//! IP text to `(family, value)` with the C library's `inet_pton`, the parser the Python
//! reference uses (`socket.inet_pton`), so leading zeros, zone ids and spaces are judged alike.

use std::os::raw::{c_char, c_int, c_void};

extern "C" {
    /// POSIX `inet_pton` from the C library (the `libc` crate does not declare it).
    fn inet_pton(af: c_int, src: *const c_char, dst: *mut c_void) -> c_int;
}

/// Longer text is never an address (the longest IPv6 spelling has 45 characters).
const MAX_TEXT: usize = 63;

/// `(4 | 6, value)`; IPv4-mapped IPv6 (`::ffff:a.b.c.d`, any spelling) is IPv4.
pub fn parse_ip(text: &str) -> Option<(u8, u128)> {
    let bytes = text.as_bytes();
    if bytes.len() > MAX_TEXT || bytes.contains(&0) {
        return None;
    }
    let mut buffer = [0u8; MAX_TEXT + 1];
    buffer[..bytes.len()].copy_from_slice(bytes);
    let source = buffer.as_ptr() as *const c_char;
    if bytes.contains(&b':') {
        let mut out = [0u8; 16];
        // SAFETY: `source` is NUL-terminated inside `buffer`; `out` has the 16 bytes AF_INET6 writes.
        let ok = unsafe { inet_pton(libc::AF_INET6, source, out.as_mut_ptr() as *mut c_void) };
        if ok != 1 {
            return None;
        }
        let value = u128::from_be_bytes(out);
        return Some(if value >> 32 == 0xFFFF {
            (4, value & 0xFFFF_FFFF)
        } else {
            (6, value)
        });
    }
    if let Some(value) = plain_ipv4(bytes) {
        return Some((4, value as u128));
    }
    let mut out = [0u8; 4];
    // SAFETY: as above; AF_INET writes 4 bytes.
    let ok = unsafe { inet_pton(libc::AF_INET, source, out.as_mut_ptr() as *mut c_void) };
    (ok == 1).then(|| (4, u32::from_be_bytes(out) as u128))
}

/// The common dotted quad without calling into the C library; only ever *accepts* what
/// `inet_pton` accepts (four decimal octets of at most 255, no leading zeros): anything else
/// goes to `inet_pton` to be judged.
fn plain_ipv4(bytes: &[u8]) -> Option<u32> {
    let mut value = 0u32;
    let mut parts = 0;
    for part in bytes.split(|&b| b == b'.') {
        let leading_zero = part.len() > 1 && part[0] == b'0';
        if part.is_empty() || part.len() > 3 || leading_zero || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let octet = part.iter().fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
        if octet > 255 {
            return None;
        }
        value = value << 8 | octet;
        parts += 1;
    }
    (parts == 4).then_some(value)
}
