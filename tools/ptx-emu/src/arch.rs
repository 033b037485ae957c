//! The emulated GPU architecture: `PTX_EMU_ARCH=sm_80|sm_86|sm_89|sm_90a` (default `sm_90a`).
//!
//! The default is `sm_90a` because the stand-in driver has always presented an H100-like device
//! (compute capability 9.0, 132 SMs, 227 KB opt-in shared memory), H100/H200 are the production
//! GPUs, and an sm_90a device runs every PTX target the project emits (`sm_80` PTX is forward
//! compatible), so existing `.target sm_80` kernels keep loading and running unchanged. Set
//! `PTX_EMU_ARCH=sm_80` to check a kernel against the A100's smaller limits.
//!
//! Figures: NVIDIA CUDA C++ Programming Guide, "Technical Specifications per Compute
//! Capability" (shared memory per SM / opt-in per block, threads and blocks per SM, registers)
//! and the products' data sheets (SM counts: A100 SXM 108, RTX A6000 84, L40S 142, H100 SXM 132).

use std::fmt;

/// One emulated architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arch {
    Sm80,
    Sm86,
    Sm89,
    Sm90a,
}

/// What a device of one architecture reports (`cuDeviceGetAttribute`) and enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchLimits {
    /// Compute capability (major, minor).
    pub cc: (u32, u32),
    pub sm_count: u32,
    /// Shared memory per SM (bytes).
    pub smem_per_sm: u32,
    /// Largest per-block shared memory a kernel may opt in to (bytes).
    pub smem_per_block_optin: u32,
    /// Per-block shared memory without opt-in (bytes).
    pub smem_per_block: u32,
    /// Shared memory the system reserves per block (bytes).
    pub smem_reserved_per_block: u32,
    pub max_threads_per_sm: u32,
    pub max_blocks_per_sm: u32,
    /// 32-bit registers per SM (and the most one block may use).
    pub regs_per_sm: u32,
    pub l2_bytes: u32,
    /// Thread-block clusters, TMA, mbarrier tx-counts, wgmma, setmaxnreg (sm_90a).
    pub hopper: bool,
}

const KB: u32 = 1024;

impl Arch {
    pub const ALL: [Arch; 4] = [Arch::Sm80, Arch::Sm86, Arch::Sm89, Arch::Sm90a];

    /// The default architecture (see the module documentation for why).
    pub const DEFAULT: Arch = Arch::Sm90a;

    /// `sm_80`, `sm_86`, `sm_89`, `sm_90a` (`sm_90` is accepted as `sm_90a`).
    pub fn parse(s: &str) -> Option<Arch> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "sm_80" | "80" => Arch::Sm80,
            "sm_86" | "86" => Arch::Sm86,
            "sm_89" | "89" => Arch::Sm89,
            "sm_90a" | "sm_90" | "90a" | "90" => Arch::Sm90a,
            _ => return None,
        })
    }

    /// The architecture named by `PTX_EMU_ARCH` (unset or empty: [`Arch::DEFAULT`]). An unknown
    /// value prints a warning (once) and uses the default.
    pub fn from_env() -> Arch {
        match std::env::var("PTX_EMU_ARCH") {
            Err(_) => Arch::DEFAULT,
            Ok(v) if v.trim().is_empty() => Arch::DEFAULT,
            Ok(v) => Arch::parse(&v).unwrap_or_else(|| {
                static WARNED: std::sync::Once = std::sync::Once::new();
                WARNED.call_once(|| {
                    eprintln!(
                        "ptx-emu: PTX_EMU_ARCH=`{v}` is not sm_80, sm_86, sm_89 or sm_90a; using {}",
                        Arch::DEFAULT
                    )
                });
                Arch::DEFAULT
            }),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Arch::Sm80 => "sm_80",
            Arch::Sm86 => "sm_86",
            Arch::Sm89 => "sm_89",
            Arch::Sm90a => "sm_90a",
        }
    }

    /// A short description of the modelled card (device name).
    pub fn card(self) -> &'static str {
        match self {
            Arch::Sm80 => "A100-like",
            Arch::Sm86 => "RTX A6000-like",
            Arch::Sm89 => "L40S-like",
            Arch::Sm90a => "H100-like",
        }
    }

    pub fn limits(self) -> ArchLimits {
        let base = ArchLimits {
            cc: (8, 0),
            sm_count: 108,
            smem_per_sm: 164 * KB,
            smem_per_block_optin: 163 * KB,
            smem_per_block: 48 * KB,
            smem_reserved_per_block: KB,
            max_threads_per_sm: 2048,
            max_blocks_per_sm: 32,
            regs_per_sm: 64 * KB,
            l2_bytes: 40 * KB * KB,
            hopper: false,
        };
        match self {
            Arch::Sm80 => base,
            Arch::Sm86 => ArchLimits {
                cc: (8, 6),
                sm_count: 84,
                smem_per_sm: 100 * KB,
                smem_per_block_optin: 99 * KB,
                max_threads_per_sm: 1536,
                max_blocks_per_sm: 16,
                l2_bytes: 6 * KB * KB,
                ..base
            },
            Arch::Sm89 => ArchLimits {
                cc: (8, 9),
                sm_count: 142,
                smem_per_sm: 100 * KB,
                smem_per_block_optin: 99 * KB,
                max_threads_per_sm: 1536,
                max_blocks_per_sm: 24,
                l2_bytes: 96 * KB * KB,
                ..base
            },
            Arch::Sm90a => ArchLimits {
                cc: (9, 0),
                sm_count: 132,
                smem_per_sm: 228 * KB,
                smem_per_block_optin: 227 * KB,
                l2_bytes: 50 * KB * KB,
                hopper: true,
                ..base
            },
        }
    }

    /// Whether a device of this architecture runs PTX whose `.target` is `target` (`sm_XY`
    /// PTX runs on compute capability ≥ X.Y; arch-specific `sm_XYa` PTX only on exactly X.Y).
    /// `Err` names why not (the real driver's JIT fails: `CUDA_ERROR_INVALID_PTX`).
    pub fn can_run(self, target: &str) -> Result<(), String> {
        let t = target.trim();
        let Some(num) = t.strip_prefix("sm_").or_else(|| t.strip_prefix("compute_")) else {
            return Err(format!("unknown PTX target `{t}`"));
        };
        let (digits, suffix) =
            num.split_at(num.find(|c: char| !c.is_ascii_digit()).unwrap_or(num.len()));
        let Ok(v) = digits.parse::<u32>() else {
            return Err(format!("unknown PTX target `{t}`"));
        };
        let (maj, min) = self.limits().cc;
        let have = maj * 10 + min;
        match suffix {
            "" if v <= have => Ok(()),
            "" => Err(format!(
                "PTX `.target {t}` needs compute capability {}.{}; the emulated {} device is {maj}.{min}",
                v / 10,
                v % 10,
                self.name()
            )),
            "a" if v == have => Ok(()),
            "a" => Err(format!(
                "PTX `.target {t}` uses architecture-specific features of compute capability exactly {}.{}; the emulated {} device is {maj}.{min}",
                v / 10,
                v % 10,
                self.name()
            )),
            _ => Err(format!("unknown PTX target `{t}`")),
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert!(Arch::Sm90a.can_run("sm_80").is_ok());
        assert!(Arch::Sm90a.can_run("sm_90a").is_ok());
        assert!(Arch::Sm90a.can_run("sm_90").is_ok());
        assert!(Arch::Sm90a.can_run("sm_100").is_err());
        assert!(Arch::Sm80.can_run("sm_80").is_ok());
        assert!(Arch::Sm80.can_run("sm_86").is_err());
        assert!(Arch::Sm80.can_run("sm_90a").is_err());
        assert!(Arch::Sm89.can_run("sm_86").is_ok());
        assert!(Arch::Sm89.can_run("sm_90").is_err());
        assert!(Arch::Sm86.can_run("sm_89").is_err());
        assert!(Arch::Sm86.can_run("sm_80").is_ok());
        assert!(Arch::Sm80.can_run("bogus").is_err());
    }

    #[test]
    fn limits() {
        assert_eq!(Arch::Sm80.limits().smem_per_block_optin, 166_912);
        assert_eq!(Arch::Sm90a.limits().smem_per_block_optin, 232_448);
        assert_eq!(Arch::Sm86.limits().smem_per_block_optin, 101_376);
        assert_eq!(Arch::Sm89.limits().smem_per_sm, 102_400);
        assert_eq!(Arch::parse("sm_90"), Some(Arch::Sm90a));
        assert_eq!(Arch::parse("sm_75"), None);
    }
}
