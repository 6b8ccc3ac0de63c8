//! Synthetic data for benchmarks and tests: reproducible, not statistically strong.

/// Deterministic random unit vectors (SplitMix64 → uniform → normalised): benchmarks need
/// reproducible data, not statistical quality.
pub struct RandomVectors(u64);

impl RandomVectors {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next_f32(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }

    /// Uniform values in [-1, 1).
    pub fn fill_raw(&mut self, out: &mut [f32]) {
        for v in out.iter_mut() {
            *v = self.next_f32();
        }
    }

    /// A unit vector of `dim` values, written into `out`.
    pub fn fill_unit(&mut self, out: &mut [f32]) {
        // The sum of three uniforms is close enough to a Gaussian for direction sampling.
        for v in out.iter_mut() {
            *v = self.next_f32() + self.next_f32() + self.next_f32();
        }
        crate::engine::embedder::l2_normalise(out);
    }
}
