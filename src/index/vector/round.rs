//! Rounding to 8-bit codes without a libm call: every 8-bit quantizer (the IVF's centroid
//! assignment, the graph's codes, query codes) rounded with `f32::round`, which is a call to
//! `roundf` per element on the baseline x86-64 target; in the IVF build it took a fifth as
//! long as the integer dot products it fed.
//!
//! Invariant: [`round127`]`(x)` is `x.round().clamp(-127.0, 127.0) as i32` for every `f32`
//! (halves away from zero, NaN to 0, infinities to ±127), so codes are the same bytes.

/// `x` rounded half away from zero and clamped to [-127, 127] (NaN: 0).
#[inline(always)]
pub fn round127(x: f32) -> i32 {
    let c = x.clamp(-127.0, 127.0);
    // Truncation toward zero (NaN: 0); the fraction `c − t` is exact for |c| ≤ 127.
    let t = c as i32;
    let f = c - t as f32;
    t + i32::from(f >= 0.5) - i32::from(f <= -0.5)
}

/// [`round127`] as a biased 8-bit code (+128: 1..=255), the form the 8-bit codes are stored in.
#[inline(always)]
pub fn biased_u8(x: f32) -> u8 {
    (round127(x) + 128) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(x: f32) -> i32 {
        x.round().clamp(-127.0, 127.0) as i32
    }

    #[test]
    fn is_round_then_clamp_for_edge_values() {
        let edges = [
            0.0,
            -0.0,
            0.5,
            -0.5,
            1.5,
            -1.5,
            2.5,
            0.499_999_97,
            -0.499_999_97,
            126.5,
            -126.5,
            126.499_99,
            127.0,
            127.5,
            -127.5,
            128.0,
            1e9,
            -1e9,
            f32::MAX,
            f32::MIN,
            f32::MIN_POSITIVE,
            f32::EPSILON,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
        ];
        for x in edges {
            assert_eq!(round127(x), reference(x), "{x:?}");
        }
    }

    #[test]
    fn is_round_then_clamp_for_every_float_in_range_at_a_stride() {
        // Every 97th bit pattern of the non-negative and negative floats up to 2^8 (all the
        // values a quantizer can produce before the clamp), both signs.
        let top = 256f32.to_bits();
        for bits in (0..=top).step_by(97) {
            for x in [f32::from_bits(bits), -f32::from_bits(bits)] {
                assert_eq!(round127(x), reference(x), "{x:?} ({bits:#x})");
            }
        }
        // Around every half: the half itself and its neighbours.
        for k in -260..260 {
            let h = k as f32 + 0.5;
            for x in [h, f32::from_bits(h.to_bits() + 1), f32::from_bits(h.to_bits() - 1)] {
                assert_eq!(round127(x), reference(x), "{x:?}");
            }
        }
    }
}
