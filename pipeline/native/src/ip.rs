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
    let mut out = [0u8; 4];
    // SAFETY: as above; AF_INET writes 4 bytes.
    let ok = unsafe { inet_pton(libc::AF_INET, source, out.as_mut_ptr() as *mut c_void) };
    (ok == 1).then(|| (4, u32::from_be_bytes(out) as u128))
}
