//! The instruction sets octet-linalg has kernels for, and run-time detection of the best one.

use std::fmt;
use std::str::FromStr;

/// An instruction set with its own micro-kernels. Ordered from least to most capable within an
/// architecture, so `max` over supported sets picks the best.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// Plain Rust: the reference twin of every kernel, and what runs on any other architecture.
    Generic,
    /// x86-64 AVX2 with FMA (Haswell and later, Zen 1 and later).
    Avx2,
    /// x86-64 AVX-512 F, BW, DQ and VL (Skylake-SP and later, Zen 4 and later).
    Avx512,
    /// [`Isa::Avx512`] plus AVX-512 VNNI (`vpdpbusd`: 64 int8 multiply-adds per instruction;
    /// Cascade Lake and later, Zen 4 and later).
    Avx512Vnni,
}

impl Isa {
    /// Every instruction set, in order.
    pub const ALL: [Isa; 4] = [Isa::Generic, Isa::Avx2, Isa::Avx512, Isa::Avx512Vnni];

    /// True when this CPU can run the set's kernels (checked at run time).
    pub fn is_supported(self) -> bool {
        match self {
            Isa::Generic => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                Isa::Avx2.is_supported()
                    && std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512dq")
                    && std::arch::is_x86_feature_detected!("avx512vl")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => {
                Isa::Avx512.is_supported() && std::arch::is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The most capable set this CPU supports.
    pub fn detect() -> Isa {
        Isa::ALL
            .into_iter()
            .rev()
            .find(|isa| isa.is_supported())
            .unwrap_or(Isa::Generic)
    }

    /// Every set this CPU supports, least capable first (what the test battery runs on).
    pub fn supported() -> Vec<Isa> {
        Isa::ALL
            .into_iter()
            .filter(|isa| isa.is_supported())
            .collect()
    }

    /// True when this set is at least [`Isa::Avx512`] and the CPU also has AVX-512 VBMI
    /// (`vpermb`/`vpermi2b`: byte permutes across a whole register, for 8-bit table lookups).
    /// A feature of its own rather than a level: some AVX-512 CPUs (Skylake-SP, Cascade Lake)
    /// lack it while having VNNI.
    pub fn has_vbmi(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            self >= Isa::Avx512
                && self.is_supported()
                && std::arch::is_x86_feature_detected!("avx512vbmi")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// The set's name as `FromStr` reads it: `generic`, `avx2`, `avx512`, `avx512vnni`.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Generic => "generic",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
            Isa::Avx512Vnni => "avx512vnni",
        }
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Isa {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Isa::ALL
            .into_iter()
            .find(|isa| isa.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                let names: Vec<&str> = Isa::ALL.iter().map(|i| i.name()).collect();
                format!(
                    "unknown instruction set '{s}' (known: {})",
                    names.join(", ")
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_is_consistent() {
        let best = Isa::detect();
        assert!(best.is_supported());
        assert!(Isa::supported().contains(&Isa::Generic));
        assert_eq!(Isa::supported().last(), Some(&best));
        for isa in Isa::ALL {
            assert_eq!(isa.name().parse::<Isa>(), Ok(isa));
        }
        assert!("sse9".parse::<Isa>().is_err());
    }
}
