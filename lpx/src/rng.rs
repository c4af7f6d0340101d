//! A seeded pseudo-random generator for `getrandom` and `AT_RANDOM`: xoshiro256** (Blackman
//! and Vigna) seeded through splitmix64. The server seeds it from RDRAND when the CPU has it
//! and from the time-stamp counter otherwise, and stirs in the TSC on every request. It is not
//! a cryptographic generator (docs/linux.md, "Limits").

/// The generator's state.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut x = seed;
        Rng { s: [splitmix(&mut x), splitmix(&mut x), splitmix(&mut x), splitmix(&mut x)] }
    }

    /// Mixes more entropy (e.g. a TSC reading) into the state.
    pub fn stir(&mut self, value: u64) {
        let mut x = value ^ self.s[0];
        self.s[0] ^= splitmix(&mut x);
        self.s[2] ^= splitmix(&mut x);
        if self.s.iter().all(|w| *w == 0) {
            self.s[0] = 1;
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    pub fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn different_seeds_give_different_streams_and_fill_covers_odd_lengths() {
        let (mut a, mut b) = (Rng::new(1), Rng::new(2));
        assert_ne!(a.next_u64(), b.next_u64());
        let mut buf = [0u8; 13];
        a.fill(&mut buf);
        assert!(buf.iter().any(|b| *b != 0));
        let mut c = Rng::new(0);
        c.stir(0);
        assert_ne!(c.next_u64(), c.next_u64());
    }
}
