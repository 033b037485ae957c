//! The GPUs the model knows (`PTX_EMU_GPU`), one table, every figure cited.
//!
//! Sources (the `src` field of each row names the ones used):
//! * [H100-DS]  NVIDIA H100 Tensor Core GPU datasheet (SXM5 and PCIe columns).
//! * [H100-WP]  NVIDIA H100 Tensor Core GPU Architecture whitepaper (Hopper): SM counts, clocks,
//!   per-SM resources (228 KB shared per SM, 227 KB per block; 50 MB L2).
//! * [H200-DS]  NVIDIA H200 Tensor Core GPU datasheet / product brief (141 GB HBM3e, 4.8 TB/s;
//!   compute identical to H100 SXM).
//! * [A100-DS]  NVIDIA A100 Tensor Core GPU datasheet (80 GB SXM: 2,039 GB/s).
//! * [A100-WP]  NVIDIA A100 Tensor Core GPU Architecture whitepaper (Ampere GA100): 108 SMs,
//!   1410 MHz boost, 40 MB L2, 164 KB shared per SM (163 KB per block).
//! * [A6000-DS] NVIDIA RTX A6000 datasheet (84 SMs / 10,752 CUDA cores, 38.7 TF FP32,
//!   309.7 TF sparse FP16 tensor, 768 GB/s); [GA102-WP] NVIDIA Ampere GA102 GPU
//!   Architecture whitepaper (6 MB L2, 128 KB L1/shared per SM, 100 KB shared).
//! * [ADA-WP]   NVIDIA Ada GPU Architecture whitepaper (RTX 4090 appendix table: 128 SMs,
//!   2520 MHz boost, 82.6 TF FP32, 165.2/330.3 TF FP16 tensor w/ FP32 accumulate
//!   dense/sparse, 1008 GB/s, 72 MB L2); [L4-DS] NVIDIA L4 datasheet (30.3 TF FP32,
//!   242 TF sparse FP16/BF16 tensor, 300 GB/s; 58 SMs, 48 MB L2 from [ADA-WP]).
//! * [CUDA-PG]  CUDA C++ Programming Guide, "Technical Specifications per Compute Capability":
//!   65,536 registers/SM, 255 per thread, max threads/blocks per SM (8.0: 2048/32;
//!   8.6 and 8.9: 1536/16 and 1536/24; 9.0: 2048/32), register allocation unit 256
//!   per warp, 1 KB shared memory reserved per block (8.x, 9.0).
//! * [SM-ARCH]  The whitepapers' SM diagrams: 4 SM sub-partitions, each with one warp scheduler
//!   dispatching one warp instruction per clock (issue rate 4 per SM per clock); the
//!   L1/shared data path delivers 128 bytes per clock per SM (one wavefront).
//!
//! Tensor figures are *dense* (the datasheets' sparse figures halved). Throughputs are the
//! datasheets' peaks at the boost clock; the model divides them by the SM count.

/// One GPU's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuSpec {
    /// `PTX_EMU_GPU` name.
    pub name: &'static str,
    pub marketing: &'static str,
    pub sms: u32,
    /// Boost clock (MHz) the SM-cycle units (issue, shared, latency) run at.
    pub boost_mhz: f64,
    /// Warp instructions issued per SM per clock.
    pub issue_per_clk: f64,
    /// Peak FP32 (non-tensor) TFLOP/s.
    pub fp32_tflops: f64,
    /// Dense tensor TFLOP/s: fp16 (fp32 accumulate), bf16, tf32, fp8 (0 = none), int8 (TOPS), fp64.
    pub tensor_f16_tflops: f64,
    pub tensor_bf16_tflops: f64,
    pub tensor_tf32_tflops: f64,
    pub tensor_f8_tflops: f64,
    pub tensor_int8_tops: f64,
    pub tensor_f64_tflops: f64,
    /// Shared-memory / L1 bytes per clock per SM.
    pub shared_bytes_per_clk: f64,
    /// DRAM bandwidth (GB/s).
    pub dram_gbs: f64,
    /// L2 → SM bytes per clock per SM: the A100 whitepaper's 5,120 B/clk L2 read bandwidth over
    /// its 108 SMs (47.4), used for every GPU (no other datasheet states it): an assumption.
    pub l2_bytes_per_clk_sm: f64,
    /// L2 size (bytes).
    pub l2_bytes: u64,
    pub regs_per_sm: u32,
    pub max_regs_per_thread: u32,
    pub smem_per_sm: u64,
    pub smem_per_block_max: u64,
    pub smem_reserved_per_block: u64,
    pub max_threads_per_sm: u32,
    pub max_blocks_per_sm: u32,
    /// Loaded global-memory latency (SM cycles): a model assumption, not a datasheet figure
    /// (microbenchmark literature puts DRAM latency at ~450–700 cycles on Ampere/Ada/Hopper).
    pub mem_latency_cycles: f64,
    /// Kernel launch cost (µs) added to every launch: an assumption (typical measured launch
    /// latency of back-to-back launches), not a datasheet figure.
    pub launch_us: f64,
    pub src: &'static str,
}

const KB: u64 = 1024;
/// [A100-WP]: 5,120 bytes/clk L2 read bandwidth, 108 SMs.
const L2_BYTES_PER_CLK_SM: f64 = 5120.0 / 108.0;
const MB: u64 = 1024 * 1024;

/// Figures shared by every GPU in the table ([CUDA-PG], [SM-ARCH]) and the model's assumptions;
/// each row below overrides the rest.
const COMMON: GpuSpec = GpuSpec {
    name: "",
    marketing: "",
    sms: 0,
    boost_mhz: 0.0,
    issue_per_clk: 4.0,
    fp32_tflops: 0.0,
    tensor_f16_tflops: 0.0,
    tensor_bf16_tflops: 0.0,
    tensor_tf32_tflops: 0.0,
    tensor_f8_tflops: 0.0,
    tensor_int8_tops: 0.0,
    tensor_f64_tflops: 0.0,
    shared_bytes_per_clk: 128.0,
    dram_gbs: 0.0,
    l2_bytes_per_clk_sm: L2_BYTES_PER_CLK_SM,
    l2_bytes: 0,
    regs_per_sm: 65536,
    max_regs_per_thread: 255,
    smem_per_sm: 0,
    smem_per_block_max: 0,
    smem_reserved_per_block: KB,
    max_threads_per_sm: 2048,
    max_blocks_per_sm: 32,
    mem_latency_cycles: 600.0,
    launch_us: 3.0,
    src: "",
};

/// Hopper (compute capability 9.0): 228 KB shared per SM (227 per block), 50 MB L2; tensor
/// rates from the bf16 figure (tf32 half, fp8/int8 double, fp64 tensor = FP32) [H100-DS].
#[allow(clippy::too_many_arguments)]
const fn hopper(
    name: &'static str,
    marketing: &'static str,
    sms: u32,
    boost_mhz: f64,
    fp32: f64,
    bf16: f64,
    dram_gbs: f64,
    src: &'static str,
) -> GpuSpec {
    GpuSpec {
        name,
        marketing,
        sms,
        boost_mhz,
        fp32_tflops: fp32,
        tensor_f16_tflops: bf16,
        tensor_bf16_tflops: bf16,
        tensor_tf32_tflops: bf16 / 2.0,
        tensor_f8_tflops: bf16 * 2.0,
        tensor_int8_tops: bf16 * 2.0,
        tensor_f64_tflops: fp32,
        dram_gbs,
        l2_bytes: 50 * MB,
        smem_per_sm: 228 * KB,
        smem_per_block_max: 227 * KB,
        src,
        ..COMMON
    }
}

/// GA102 / AD10x (compute capability 8.6 / 8.9): 100 KB shared per SM (99 per block), 1536
/// threads per SM [GA102-WP, ADA-WP, CUDA-PG].
const SM_8X_CONSUMER: GpuSpec = GpuSpec {
    smem_per_sm: 100 * KB,
    smem_per_block_max: 99 * KB,
    max_threads_per_sm: 1536,
    ..COMMON
};

/// Every GPU `PTX_EMU_GPU` accepts.
pub const GPUS: &[GpuSpec] = &[
    // H100 SXM5: 132 SMs, 1980 MHz max boost, FP32 66.9 TF, BF16/FP16 dense 989.4 TF,
    // TF32 494.7, FP8 1,978.9, FP64 tensor 66.9, HBM3 3.35 TB/s [H100-DS, H100-WP].
    hopper(
        "h100-sxm",
        "NVIDIA H100 SXM5 80GB",
        132,
        1980.0,
        66.9,
        989.4,
        3350.0,
        "H100-DS, H100-WP, CUDA-PG, SM-ARCH",
    ),
    // H100 PCIe: 114 SMs, 1755 MHz boost, FP32 51.2 TF, BF16 dense 756 TF, HBM2e 2.0 TB/s
    // [H100-DS, H100-WP].
    hopper(
        "h100-pcie",
        "NVIDIA H100 PCIe 80GB",
        114,
        1755.0,
        51.2,
        756.0,
        2000.0,
        "H100-DS, H100-WP, CUDA-PG, SM-ARCH",
    ),
    // H200 SXM: H100 SXM compute, HBM3e 4.8 TB/s [H200-DS].
    hopper(
        "h200",
        "NVIDIA H200 SXM 141GB",
        132,
        1980.0,
        66.9,
        989.4,
        4800.0,
        "H200-DS, H100-WP, CUDA-PG, SM-ARCH",
    ),
    // A100 SXM4 80 GB: 108 SMs, 1410 MHz, FP32 19.5, TF32 156, BF16/FP16 312, INT8 624 dense,
    // FP64 tensor 19.5, 2,039 GB/s, 40 MB L2, 164 KB shared per SM [A100-DS, A100-WP].
    GpuSpec {
        name: "a100-sxm",
        marketing: "NVIDIA A100 SXM4 80GB",
        sms: 108,
        boost_mhz: 1410.0,
        fp32_tflops: 19.5,
        tensor_f16_tflops: 312.0,
        tensor_bf16_tflops: 312.0,
        tensor_tf32_tflops: 156.0,
        tensor_int8_tops: 624.0,
        tensor_f64_tflops: 19.5,
        dram_gbs: 2039.0,
        l2_bytes: 40 * MB,
        smem_per_sm: 164 * KB,
        smem_per_block_max: 163 * KB,
        src: "A100-DS, A100-WP, CUDA-PG, SM-ARCH",
        ..COMMON
    },
    // RTX A6000: 84 SMs, 1800 MHz, FP32 38.7, TF32 77.4, FP16/BF16 154.8, INT8 309.7 dense,
    // 768 GB/s, 6 MB L2, 16 blocks/SM [A6000-DS, GA102-WP, CUDA-PG 8.6].
    GpuSpec {
        name: "a6000",
        marketing: "NVIDIA RTX A6000",
        sms: 84,
        boost_mhz: 1800.0,
        fp32_tflops: 38.7,
        tensor_f16_tflops: 154.8,
        tensor_bf16_tflops: 154.8,
        tensor_tf32_tflops: 77.4,
        tensor_int8_tops: 309.7,
        tensor_f64_tflops: 0.6,
        dram_gbs: 768.0,
        l2_bytes: 6 * MB,
        max_blocks_per_sm: 16,
        src: "A6000-DS, GA102-WP, CUDA-PG, SM-ARCH",
        ..SM_8X_CONSUMER
    },
    // L4: 58 SMs, 2040 MHz, FP32 30.3, TF32 60, FP16/BF16 121, FP8/INT8 242 dense, 300 GB/s,
    // 48 MB L2, 24 blocks/SM [L4-DS, ADA-WP, CUDA-PG 8.9].
    GpuSpec {
        name: "l4",
        marketing: "NVIDIA L4",
        sms: 58,
        boost_mhz: 2040.0,
        fp32_tflops: 30.3,
        tensor_f16_tflops: 121.0,
        tensor_bf16_tflops: 121.0,
        tensor_tf32_tflops: 60.0,
        tensor_f8_tflops: 242.0,
        tensor_int8_tops: 242.0,
        tensor_f64_tflops: 0.5,
        dram_gbs: 300.0,
        l2_bytes: 48 * MB,
        max_blocks_per_sm: 24,
        src: "L4-DS, ADA-WP, CUDA-PG, SM-ARCH",
        ..SM_8X_CONSUMER
    },
    // RTX 4090: 128 SMs, 2520 MHz, FP32 82.6, FP16/BF16 with FP32 accumulate 165.2, TF32 82.6,
    // FP8 330.3, INT8 660.6 dense, 1008 GB/s, 72 MB L2 [ADA-WP appendix, CUDA-PG 8.9].
    GpuSpec {
        name: "rtx4090",
        marketing: "NVIDIA GeForce RTX 4090",
        sms: 128,
        boost_mhz: 2520.0,
        fp32_tflops: 82.6,
        tensor_f16_tflops: 165.2,
        tensor_bf16_tflops: 165.2,
        tensor_tf32_tflops: 82.6,
        tensor_f8_tflops: 330.3,
        tensor_int8_tops: 660.6,
        tensor_f64_tflops: 1.3,
        dram_gbs: 1008.0,
        l2_bytes: 72 * MB,
        max_blocks_per_sm: 24,
        src: "ADA-WP, CUDA-PG, SM-ARCH",
        ..SM_8X_CONSUMER
    },
];

/// Environment variable naming the GPU to model.
pub const GPU_ENV: &str = "PTX_EMU_GPU";

impl GpuSpec {
    /// Look a GPU up by its `PTX_EMU_GPU` name; the error lists the names.
    pub fn by_name(name: &str) -> Result<&'static GpuSpec, String> {
        let n = name.trim().to_ascii_lowercase();
        GPUS.iter().find(|g| g.name == n).ok_or_else(|| {
            format!(
                "unknown GPU {name:?}: use one of {}",
                GPUS.iter().map(|g| g.name).collect::<Vec<_>>().join(", ")
            )
        })
    }

    /// `PTX_EMU_GPU` parsed: `Ok(None)` when unset.
    pub fn from_env() -> Result<Option<&'static GpuSpec>, String> {
        match std::env::var(GPU_ENV) {
            Ok(s) if !s.trim().is_empty() => GpuSpec::by_name(&s)
                .map(Some)
                .map_err(|e| format!("{GPU_ENV}: {e}")),
            _ => Ok(None),
        }
    }

    pub fn clock_hz(&self) -> f64 {
        self.boost_mhz * 1e6
    }

    /// FP32 FLOPs per SM per clock.
    pub fn fp32_per_clk_sm(&self) -> f64 {
        self.fp32_tflops * 1e12 / (self.sms as f64 * self.clock_hz())
    }

    /// Dense tensor TFLOP/s for an operand type name (`f16`, `bf16`, `tf32`, `f8`, `int8`,
    /// `f64`); `None` when the GPU has no tensor path for it.
    pub fn tensor_tflops(&self, dtype: &str) -> Option<f64> {
        use crate::counters::TensorDtype as T;
        let v = match T::from_name(dtype)? {
            T::F16 => self.tensor_f16_tflops,
            T::Bf16 => self.tensor_bf16_tflops,
            T::Tf32 => self.tensor_tf32_tflops,
            T::F8 => self.tensor_f8_tflops,
            T::Int8 => self.tensor_int8_tops,
            T::F64 => self.tensor_f64_tflops,
        };
        (v > 0.0).then_some(v)
    }

    /// The highest dense tensor rate (TFLOP/s) of the 16-bit types (roofline ceiling).
    pub fn tensor_peak_tflops(&self) -> f64 {
        self.tensor_bf16_tflops.max(self.tensor_f16_tflops)
    }
}
