//! Random strings, prices and bounded longs: Java's `StringsGenerator`, `PriceGenerator` and
//! `LongGenerator`.
//!
//! Every function appends ASCII bytes to a caller's buffer (a column's value buffer) instead of
//! returning a `String`, so that a batch is built without an allocation or a copy per value.

use super::java_random::JavaRandom;

/// Shortest string `next_string` draws (before trimming).
const MIN_STRING_LENGTH: i32 = 3;

/// `StringsGenerator.nextString(random, maxLength, special)`: 3 to `max_length - 1` characters,
/// each `special` with probability 1/13 and otherwise a lowercase letter, then trimmed as Java's
/// `String.trim` does. Appends to `out` and returns the number of bytes appended.
pub(crate) fn next_string(
    random: &mut JavaRandom,
    max_length: i32,
    special: u8,
    out: &mut Vec<u8>,
) -> usize {
    let start = out.len();
    let length = MIN_STRING_LENGTH + random.next_int_bounded(max_length - MIN_STRING_LENGTH);
    for _ in 0..length {
        let byte = if random.next_int_bounded(13) == 0 {
            special
        } else {
            b'a' + random.next_int_bounded(26) as u8
        };
        out.push(byte);
    }
    if special <= b' ' {
        java_trim_from(out, start);
    }
    out.len() - start
}

/// `String.trim()` applied to `out[start..]`: drops leading and trailing characters up to
/// U+0020.
fn java_trim_from(out: &mut Vec<u8>, start: usize) {
    let trailing = out[start..]
        .iter()
        .rev()
        .take_while(|&&b| b <= b' ')
        .count();
    out.truncate(out.len() - trailing);
    let leading = out[start..].iter().take_while(|&&b| b <= b' ').count();
    if leading > 0 {
        out.drain(start..start + leading);
    }
}

/// `StringsGenerator.nextExactString(random, length)` as in the generator that seeds one Random
/// per event: six characters per `nextInt()`, each `'a' + rnd % 26` with Java's signed
/// remainder, so a negative draw yields characters from `H` to `` ` ``.
pub(crate) fn next_exact_string(random: &mut JavaRandom, length: i32, out: &mut Vec<u8>) {
    let start = out.len();
    // Sized once and filled in place: a copy per six characters would cost more than making them.
    out.resize(start + length.max(0) as usize, 0);
    for chunk in out[start..].chunks_mut(6) {
        let mut rnd = random.next_int();
        for byte in chunk {
            *byte = (i32::from(b'a') + rnd % 26) as u8;
            rnd /= 26;
        }
    }
}

/// `StringsGenerator.nextExtra(random, currentSize, desiredAverageSize)`: padding such that
/// `current_size` plus its length averages `desired_average_size`. Appends to `out`.
pub(crate) fn next_extra(
    random: &mut JavaRandom,
    current_size: i32,
    desired_average_size: i32,
    out: &mut Vec<u8>,
) {
    if current_size > desired_average_size {
        return;
    }
    let wanted = desired_average_size - current_size;
    let delta = java_round(f64::from(wanted) * 0.2) as i32;
    let min_size = wanted - delta;
    let size = if delta == 0 {
        min_size
    } else {
        min_size + random.next_int_bounded(2 * delta)
    };
    next_exact_string(random, size, out);
}

/// `PriceGenerator.nextPrice`: log-uniform cents between 1.00 and 1,000,000.00.
pub(crate) fn next_price(random: &mut JavaRandom) -> i64 {
    java_round(10.0_f64.powf(random.next_double() * 6.0) * 100.0)
}

/// `LongGenerator.nextLong(random, n)`: uniform below `n` when it fits an int, and Java's
/// skewed `abs(nextLong() % n)` otherwise.
pub(crate) fn next_long(random: &mut JavaRandom, n: i64) -> i64 {
    if n < i64::from(i32::MAX) {
        // n < i32::MAX, so the cast is exact (and a non-positive n yields 0).
        i64::from(random.next_int_bounded(n as i32))
    } else {
        (random.next_long() % n).wrapping_abs()
    }
}

/// Java's `Math.round(double)`: the closest long, ties toward positive infinity, saturating.
fn java_round(x: f64) -> i64 {
    let floor = x.floor();
    // `x - floor` is exact, so this is `floor(x + 1/2)` without the rounding of `x + 0.5`.
    if x - floor >= 0.5 {
        (floor as i64).saturating_add(1)
    } else {
        floor as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trim_matches_java() {
        let mut s = b"ab  x y  ".to_vec();
        java_trim_from(&mut s, 2);
        assert_eq!(s, b"abx y");
        let mut s = b"   ".to_vec();
        java_trim_from(&mut s, 0);
        assert_eq!(s, b"");
    }

    #[test]
    fn exact_string_has_its_length() {
        let mut random = JavaRandom::new(1);
        let mut s = Vec::new();
        next_exact_string(&mut random, 77, &mut s);
        assert_eq!(s.len(), 77);
        assert!(s.iter().all(|b| (b'H'..=b'z').contains(b)));
    }

    #[test]
    fn java_round_ties_up() {
        assert_eq!(java_round(2.5), 3);
        assert_eq!(java_round(-2.5), -2);
        assert_eq!(java_round(2.4999), 2);
        assert_eq!(java_round(0.499_999_999_999_999_94), 0);
    }
}
