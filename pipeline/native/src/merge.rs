//! Merging a counts cell's buffered inserts into its sorted keys (`pipeline/core/prefix_counts.py`).
//!
//! numpy sorts the whole cell again at every merge (a stable argsort of existing and new keys:
//! tens of ms for 10^5 keys, on the event loop that answers queries). Here only the new keys are
//! sorted (a radix sort that skips the bytes they all share), then each is placed among the
//! sorted ones by galloping search, and the runs of existing keys between them are copied whole.

/// A key as the cell's numpy array orders it: IPv4 `uint32` in native byte order, IPv6 16
/// big-endian bytes (`S16`), whose byte order is numeric order.
pub trait Key: Copy + Ord + Default {
    const WIDTH: usize;
    fn read(bytes: &[u8]) -> Self;
    fn put(self, out: &mut [u8]);
    /// The `index`-th least significant byte, the radix sort's digit.
    fn digit(self, index: usize) -> usize;
}

impl Key for u32 {
    const WIDTH: usize = 4;
    fn read(bytes: &[u8]) -> Self {
        u32::from_ne_bytes(bytes.try_into().expect("4-byte key"))
    }
    fn put(self, out: &mut [u8]) {
        out.copy_from_slice(&self.to_ne_bytes());
    }
    fn digit(self, index: usize) -> usize {
        (self >> (8 * index)) as usize & 0xff
    }
}

impl Key for u128 {
    const WIDTH: usize = 16;
    fn read(bytes: &[u8]) -> Self {
        u128::from_be_bytes(bytes.try_into().expect("16-byte key"))
    }
    fn put(self, out: &mut [u8]) {
        out.copy_from_slice(&self.to_be_bytes());
    }
    fn digit(self, index: usize) -> usize {
        (self >> (8 * index)) as usize & 0xff
    }
}

/// Where the pending inserts go among the sorted keys: each new key (sorted, counts summed) with
/// the index of the first existing key not below it, and whether that key equals it.
pub struct Plan<K> {
    new: Vec<(K, i64)>,
    at: Vec<(usize, bool)>,
    /// Keys after the merge.
    pub len: usize,
}

/// The merge's plan for `keys` (sorted, unique) and `pending_keys`/`pending_vals` (any order,
/// repeats); only the pending keys are sorted.
pub fn plan<K: Key>(keys: &[u8], pending_keys: &[u8], pending_vals: &[i64]) -> Plan<K> {
    let width = K::WIDTH;
    let existing = keys.len() / width;
    let key_at = |index: usize| K::read(&keys[index * width..(index + 1) * width]);
    let new = sorted_sums::<K>(pending_keys, pending_vals);
    let mut at = Vec::with_capacity(new.len());
    let mut next = 0;
    for &(key, _) in &new {
        let index = gallop(next, existing, |index| key_at(index) < key);
        let hit = index < existing && key_at(index) == key;
        at.push((index, hit));
        next = index + usize::from(hit);
    }
    let hits = at.iter().filter(|&&(_, hit)| hit).count();
    Plan {
        len: existing + new.len() - hits,
        new,
        at,
    }
}

/// The merged keys and counts (int64, native order) written into `out_keys`/`out_vals`, sized
/// for `plan.len` keys; existing runs between new keys are copied whole. Counts add with
/// wrap-around, as numpy's int64 does.
pub fn fill<K: Key>(plan: &Plan<K>, keys: &[u8], vals: &[u8], out_keys: &mut [u8], out_vals: &mut [u8]) {
    let width = K::WIDTH;
    let (mut next, mut out) = (0, 0);
    for (&(key, val), &(index, hit)) in plan.new.iter().zip(&plan.at) {
        let count = index - next;
        out_keys[out * width..(out + count) * width].copy_from_slice(&keys[next * width..index * width]);
        out_vals[out * 8..(out + count) * 8].copy_from_slice(&vals[next * 8..index * 8]);
        out += count;
        let sum = if hit {
            read_count(vals, index).wrapping_add(val)
        } else {
            val
        };
        key.put(&mut out_keys[out * width..(out + 1) * width]);
        out_vals[out * 8..(out + 1) * 8].copy_from_slice(&sum.to_ne_bytes());
        out += 1;
        next = index + usize::from(hit);
    }
    let rest = vals.len() / 8 - next;
    out_keys[out * width..(out + rest) * width].copy_from_slice(&keys[next * width..]);
    out_vals[out * 8..(out + rest) * 8].copy_from_slice(&vals[next * 8..]);
}

/// Running sums of int64 `vals` (native order) into `out`, one longer, starting at 0.
pub fn running_sums(vals: &[u8], out: &mut [u8]) {
    let mut running = 0i64;
    out[..8].copy_from_slice(&running.to_ne_bytes());
    for (index, count) in vals.chunks_exact(8).enumerate() {
        running = running.wrapping_add(i64::from_ne_bytes(count.try_into().expect("8-byte count")));
        out[(index + 1) * 8..(index + 2) * 8].copy_from_slice(&running.to_ne_bytes());
    }
}

fn read_count(vals: &[u8], index: usize) -> i64 {
    i64::from_ne_bytes(vals[index * 8..(index + 1) * 8].try_into().expect("8-byte count"))
}

/// The first index in `from..to` where `before` is false (it is true, then false, over the
/// range), searched outward from `from`: cheap when the answer is near, as in a merge.
fn gallop(from: usize, to: usize, before: impl Fn(usize) -> bool) -> usize {
    let (mut low, mut step) = (from, 1);
    while low + step <= to && before(low + step - 1) {
        low += step;
        step *= 2;
    }
    let mut high = (low + step).min(to);
    while low < high {
        let middle = low + (high - low) / 2;
        if before(middle) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    low
}

/// The pending inserts sorted by key (LSD radix, one byte per pass, skipping a byte every key
/// shares) with the counts of equal keys summed.
fn sorted_sums<K: Key>(pending_keys: &[u8], pending_vals: &[i64]) -> Vec<(K, i64)> {
    let mut items: Vec<(K, i64)> = pending_keys
        .chunks_exact(K::WIDTH)
        .map(K::read)
        .zip(pending_vals.iter().copied())
        .collect();
    let mut spare = vec![(K::default(), 0i64); items.len()];
    for digit in 0..K::WIDTH {
        let mut starts = [0usize; 256];
        for &(key, _) in &items {
            starts[key.digit(digit)] += 1;
        }
        if starts.contains(&items.len()) {
            continue;
        }
        let mut offset = 0;
        for start in starts.iter_mut() {
            let count = *start;
            *start = offset;
            offset += count;
        }
        for &item in &items {
            let slot = &mut starts[item.0.digit(digit)];
            spare[*slot] = item;
            *slot += 1;
        }
        std::mem::swap(&mut items, &mut spare);
    }
    let mut summed: Vec<(K, i64)> = Vec::with_capacity(items.len());
    for (key, val) in items {
        match summed.last_mut() {
            Some(last) if last.0 == key => last.1 = last.1.wrapping_add(val),
            _ => summed.push((key, val)),
        }
    }
    summed
}
