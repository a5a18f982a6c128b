//! A port of `java.util.Random`, bit for bit.
//!
//! The Nexmark generator seeds one `java.util.Random` per event with the event id, so the values
//! of an event follow from its id alone. Porting the generator (a 48-bit linear congruential
//! generator, Knuth's constants) rather than using another RNG keeps our rows equal to the Java
//! generator's for the same event id.

/// The multiplier of the LCG.
const MULTIPLIER: i64 = 0x5_DEEC_E66D;
/// The increment of the LCG.
const ADDEND: i64 = 0xB;
/// The state is 48 bits wide.
const MASK: i64 = (1 << 48) - 1;

/// `java.util.Random`: same seed, same sequence as the JDK.
#[derive(Debug, Clone)]
pub(crate) struct JavaRandom {
    seed: i64,
}

impl JavaRandom {
    /// `new Random(seed)`: the seed is scrambled with the multiplier.
    pub(crate) fn new(seed: i64) -> Self {
        Self {
            seed: (seed ^ MULTIPLIER) & MASK,
        }
    }

    /// `next(bits)`: the top `bits` bits of the advanced 48-bit state, as a signed int.
    #[inline]
    fn next(&mut self, bits: u32) -> i32 {
        self.seed = (self.seed.wrapping_mul(MULTIPLIER).wrapping_add(ADDEND)) & MASK;
        // The cast keeps the low 32 bits, as Java's `(int)` does.
        (self.seed >> (48 - bits)) as i32
    }

    /// `nextInt()`: 32 uniform bits.
    #[inline]
    pub(crate) fn next_int(&mut self) -> i32 {
        self.next(32)
    }

    /// `nextInt(bound)`: uniform in `0..bound`, with Java's power-of-two shortcut and its
    /// rejection loop. Java throws on a bound that is not positive; here such a bound yields 0
    /// without advancing the state (configurations are validated so this does not happen).
    #[inline]
    pub(crate) fn next_int_bounded(&mut self, bound: i32) -> i32 {
        if bound <= 0 {
            return 0;
        }
        let mut r = self.next(31);
        let m = bound - 1;
        if bound & m == 0 {
            return ((i64::from(bound) * i64::from(r)) >> 31) as i32;
        }
        let mut u = r;
        loop {
            r = u % bound;
            // Java rejects when `u - r + m` overflows an int.
            if u.wrapping_sub(r).wrapping_add(m) >= 0 {
                return r;
            }
            u = self.next(31);
        }
    }

    /// `nextLong()`: two 32-bit draws, the second added as a signed int.
    #[inline]
    pub(crate) fn next_long(&mut self) -> i64 {
        let high = i64::from(self.next(32)) << 32;
        high.wrapping_add(i64::from(self.next(32)))
    }

    /// `nextDouble()`: 53 bits in `[0, 1)`.
    #[inline]
    pub(crate) fn next_double(&mut self) -> f64 {
        let high = i64::from(self.next(26)) << 27;
        let bits = high + i64::from(self.next(27));
        bits as f64 * (1.0 / (1_i64 << 53) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::JavaRandom;

    // Expected values printed by OpenJDK 17's `java.util.Random`.
    #[test]
    fn matches_the_jdk() {
        let mut r = JavaRandom::new(42);
        assert_eq!(r.next_int(), -1_170_105_035);
        assert_eq!(r.next_int(), 234_785_527);

        let mut r = JavaRandom::new(0);
        assert_eq!(r.next_double(), 0.730_967_787_376_657);

        let mut r = JavaRandom::new(42);
        assert_eq!(r.next_long(), -5_025_562_857_975_149_833);

        let mut r = JavaRandom::new(-3);
        assert_eq!(r.next_int_bounded(13), 4);
        assert_eq!(r.next_long(), -412_719_267_277_789_695);
        assert_eq!(r.next_double(), 0.150_223_818_461_288_85);
        assert_eq!(r.next_int_bounded(i32::MAX), 118_466_140);
    }

    #[test]
    fn bounded_ints_match_the_jdk() {
        let mut r = JavaRandom::new(7);
        let got: Vec<i32> = (0..8).map(|_| r.next_int_bounded(10)).collect();
        assert_eq!(got, JDK_SEED_7_BOUND_10);
        let mut r = JavaRandom::new(7);
        let got: Vec<i32> = (0..8).map(|_| r.next_int_bounded(16)).collect();
        assert_eq!(got, JDK_SEED_7_BOUND_16);
        // A bound just over 2^30 makes the rejection loop fire for about half the draws.
        let mut r = JavaRandom::new(7);
        let got: Vec<i32> = (0..8).map(|_| r.next_int_bounded(BIG_BOUND)).collect();
        assert_eq!(got, JDK_SEED_7_BIG_BOUND);
    }

    const BIG_BOUND: i32 = (1 << 30) + 1;
    const JDK_SEED_7_BOUND_10: [i32; 8] = [6, 4, 5, 4, 0, 4, 8, 9];
    const JDK_SEED_7_BOUND_16: [i32; 8] = [11, 10, 11, 0, 5, 7, 14, 11];
    const JDK_SEED_7_BIG_BOUND: [i32; 8] = [
        20_678_044,
        747_989_380,
        1_053_566_254,
        755_731_200,
        259_278_708,
        542_588_911,
        178_712_961,
        234_738_279,
    ];
}
