//! The 128-byte `CUtensorMap` of the emulator: what the stand-in's `cuTensorMapEncodeTiled`
//! writes and `cp.async.bulk.tensor` reads. The real layout is undocumented (opaque); this one
//! is the emulator's own, with the same validation rules as the CUDA driver API documents for
//! `cuTensorMapEncodeTiled` (CUDA 12.4).
//!
//! Layout (little endian): 0 magic `b"PXTM"`, 4 data type, 5 rank, 6 interleave, 7 swizzle,
//! 8 L2 promotion, 9 OOB fill, 10 element size, 16 global address (u64), 24 global dims
//! (5 × u32), 48 global strides of dims 1.. in bytes (4 × u64), 80 box dims (5 × u32),
//! 100 element strides (5 × u32).

/// `CUtensorMapSwizzle`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Swizzle {
    None = 0,
    B32 = 1,
    B64 = 2,
    B128 = 3,
}

impl Swizzle {
    /// The swizzle span in bytes (0 for none).
    pub fn span(self) -> usize {
        match self {
            Swizzle::None => 0,
            Swizzle::B32 => 32,
            Swizzle::B64 => 64,
            Swizzle::B128 => 128,
        }
    }

    /// The shared-memory byte address of logical byte address `a` (CuTe `Swizzle<B,4,3>` with
    /// B = 1, 2, 3 for 32B, 64B, 128B: the 16-byte chunk index, bits [4, 4+B), is XORed with
    /// bits [7, 7+B), the index of the 128-byte row modulo 2^B).
    pub fn apply(self, a: usize) -> usize {
        let b = match self {
            Swizzle::None => return a,
            Swizzle::B32 => 1,
            Swizzle::B64 => 2,
            Swizzle::B128 => 3,
        };
        let mask = ((1usize << b) - 1) << 7;
        a ^ ((a & mask) >> 3)
    }
}

/// A decoded tensor map (tile mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorMap {
    /// `CUtensorMapDataType`.
    pub dtype: u8,
    pub rank: u8,
    pub interleave: u8,
    pub swizzle: Swizzle,
    pub l2_promotion: u8,
    /// `CUtensorMapFloatOOBfill`: 0 zeros, 1 NaN (NAN_REQUEST_ZERO_FMA).
    pub oob_fill: u8,
    pub elem_size: u8,
    pub global_address: u64,
    pub global_dim: [u32; 5],
    /// Byte stride of dims 1..rank (dim 0's stride is the element size).
    pub global_strides: [u64; 4],
    pub box_dim: [u32; 5],
    pub element_strides: [u32; 5],
}

const MAGIC: &[u8; 4] = b"PXTM";

/// Element size in bytes of a `CUtensorMapDataType` (None: unknown type).
pub fn dtype_size(dtype: u32) -> Option<u8> {
    Some(match dtype {
        0 => 1,                        // UINT8
        1 | 6 | 9 => 2,                // UINT16, FLOAT16, BFLOAT16
        2 | 3 | 7 | 10 | 11 | 12 => 4, // UINT32, INT32, FLOAT32, FLOAT32_FTZ, TFLOAT32(_FTZ)
        4 | 5 | 8 => 8,                // UINT64, INT64, FLOAT64
        _ => return None,
    })
}

fn is_float(dtype: u8) -> bool {
    matches!(dtype, 6..=12)
}

impl TensorMap {
    /// `cuTensorMapEncodeTiled`'s checks (CUDA driver API, 12.4) and the map; `Err` names the
    /// violated rule (the driver returns `CUDA_ERROR_INVALID_VALUE`).
    #[allow(clippy::too_many_arguments)]
    pub fn encode_tiled(
        dtype: u32,
        rank: u32,
        global_address: u64,
        global_dim: &[u64],
        global_strides: &[u64],
        box_dim: &[u32],
        element_strides: &[u32],
        interleave: u32,
        swizzle: u32,
        l2_promotion: u32,
        oob_fill: u32,
    ) -> Result<TensorMap, String> {
        let esize = dtype_size(dtype).ok_or(format!("unknown tensor data type {dtype}"))?;
        if !(1..=5).contains(&rank) {
            return Err(format!("tensorRank {rank} is outside 1..=5"));
        }
        let r = rank as usize;
        if interleave != 0 {
            return Err("only CU_TENSOR_MAP_INTERLEAVE_NONE is emulated".into());
        }
        let swz = match swizzle {
            0 => Swizzle::None,
            1 => Swizzle::B32,
            2 => Swizzle::B64,
            3 => Swizzle::B128,
            _ => return Err(format!("unknown swizzle {swizzle}")),
        };
        if l2_promotion > 3 {
            return Err(format!("unknown L2 promotion {l2_promotion}"));
        }
        if oob_fill > 1 {
            return Err(format!("unknown OOB fill {oob_fill}"));
        }
        if oob_fill == 1 && !is_float(dtype as u8) {
            return Err("CU_TENSOR_MAP_FLOAT_OOB_FILL_NAN_REQUEST_ZERO_FMA needs a floating-point data type".into());
        }
        if !global_address.is_multiple_of(16) {
            return Err(format!(
                "globalAddress {global_address:#x} must be 16-byte aligned"
            ));
        }
        if global_dim.len() < r
            || box_dim.len() < r
            || element_strides.len() < r
            || global_strides.len() + 1 < r
        {
            return Err("fewer array entries than tensorRank".into());
        }
        let mut m = TensorMap {
            dtype: dtype as u8,
            rank: rank as u8,
            interleave: 0,
            swizzle: swz,
            l2_promotion: l2_promotion as u8,
            oob_fill: oob_fill as u8,
            elem_size: esize,
            global_address,
            global_dim: [1; 5],
            global_strides: [0; 4],
            box_dim: [1; 5],
            element_strides: [1; 5],
        };
        for i in 0..r {
            let d = global_dim[i];
            if d == 0 || d > u32::MAX as u64 {
                return Err(format!("globalDim[{i}] = {d} must be in 1..2^32"));
            }
            m.global_dim[i] = d as u32;
            let b = box_dim[i];
            if b == 0 || b > 256 {
                return Err(format!("boxDim[{i}] = {b} must be in 1..=256"));
            }
            m.box_dim[i] = b;
            let s = element_strides[i];
            if s == 0 || s > 8 {
                return Err(format!("elementStrides[{i}] = {s} must be in 1..=8"));
            }
            m.element_strides[i] = s;
        }
        for i in 1..r {
            let s = global_strides[i - 1];
            if !s.is_multiple_of(16) || s >= 1 << 40 {
                return Err(format!(
                    "globalStrides[{}] = {s} must be a multiple of 16 below 2^40",
                    i - 1
                ));
            }
            m.global_strides[i - 1] = s;
        }
        let inner = m.box_dim[0] as usize * esize as usize;
        if !inner.is_multiple_of(16) {
            return Err(format!(
                "boxDim[0] × element size = {inner} bytes must be a multiple of 16"
            ));
        }
        if swz != Swizzle::None && inner > swz.span() {
            return Err(format!(
                "boxDim[0] × element size = {inner} bytes must not exceed the swizzle span of {} bytes",
                swz.span()
            ));
        }
        Ok(m)
    }

    pub fn to_bytes(&self) -> [u8; 128] {
        let mut b = [0u8; 128];
        b[0..4].copy_from_slice(MAGIC);
        b[4] = self.dtype;
        b[5] = self.rank;
        b[6] = self.interleave;
        b[7] = self.swizzle as u8;
        b[8] = self.l2_promotion;
        b[9] = self.oob_fill;
        b[10] = self.elem_size;
        b[16..24].copy_from_slice(&self.global_address.to_le_bytes());
        for i in 0..5 {
            b[24 + 4 * i..28 + 4 * i].copy_from_slice(&self.global_dim[i].to_le_bytes());
            b[80 + 4 * i..84 + 4 * i].copy_from_slice(&self.box_dim[i].to_le_bytes());
            b[100 + 4 * i..104 + 4 * i].copy_from_slice(&self.element_strides[i].to_le_bytes());
        }
        for i in 0..4 {
            b[48 + 8 * i..56 + 8 * i].copy_from_slice(&self.global_strides[i].to_le_bytes());
        }
        b
    }

    /// The map in `b` (None: not a map this emulator encoded).
    pub fn from_bytes(b: &[u8]) -> Option<TensorMap> {
        if b.len() < 128 || &b[0..4] != MAGIC {
            return None;
        }
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
        let swizzle = match b[7] {
            0 => Swizzle::None,
            1 => Swizzle::B32,
            2 => Swizzle::B64,
            3 => Swizzle::B128,
            _ => return None,
        };
        Some(TensorMap {
            dtype: b[4],
            rank: b[5],
            interleave: b[6],
            swizzle,
            l2_promotion: b[8],
            oob_fill: b[9],
            elem_size: b[10],
            global_address: u64_at(16),
            global_dim: std::array::from_fn(|i| u32_at(24 + 4 * i)),
            global_strides: std::array::from_fn(|i| u64_at(48 + 8 * i)),
            box_dim: std::array::from_fn(|i| u32_at(80 + 4 * i)),
            element_strides: std::array::from_fn(|i| u32_at(100 + 4 * i)),
        })
    }

    /// Elements of the box loaded along dim `i` (every element_strides[i]-th of box_dim[i]).
    pub fn box_count(&self, i: usize) -> u32 {
        self.box_dim[i].div_ceil(self.element_strides[i])
    }

    /// Bytes of one box in shared memory (what a tile load delivers to its mbarrier, OOB
    /// elements included).
    pub fn box_bytes(&self) -> usize {
        (0..self.rank as usize)
            .map(|i| self.box_count(i) as usize)
            .product::<usize>()
            * self.elem_size as usize
    }

    /// The fill pattern of one out-of-bounds element (zeros, or the data type's NaN).
    pub fn oob_element(&self) -> u64 {
        if self.oob_fill == 0 {
            return 0;
        }
        match self.dtype {
            6 | 9 => 0x7fff,            // f16, bf16
            8 => 0x7fff_ffff_ffff_ffff, // f64
            _ => 0x7fff_ffff,           // f32 and tf32
        }
    }

    /// For every element of the box (in shared-memory order: dim 0 fastest), its global
    /// address, or None when it lies outside the tensor. `coords` are the box's start.
    pub fn box_elements(&self, coords: &[i32]) -> Vec<Option<u64>> {
        let r = self.rank as usize;
        let counts: Vec<u32> = (0..r).map(|i| self.box_count(i)).collect();
        let total: usize = counts.iter().map(|&c| c as usize).product();
        let mut out = Vec::with_capacity(total);
        let mut idx = vec![0u32; r];
        for _ in 0..total {
            let mut addr = self.global_address;
            let mut inside = true;
            for i in 0..r {
                let x = coords[i] as i64 + (idx[i] * self.element_strides[i]) as i64;
                if x < 0 || x >= self.global_dim[i] as i64 {
                    inside = false;
                    break;
                }
                let stride = if i == 0 {
                    self.elem_size as u64
                } else {
                    self.global_strides[i - 1]
                };
                addr = addr.wrapping_add(x as u64 * stride);
            }
            out.push(inside.then_some(addr));
            for i in 0..r {
                idx[i] += 1;
                if idx[i] < counts[i] {
                    break;
                }
                idx[i] = 0;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swizzle_patterns() {
        // 128B: chunk (bits 4..7) ^= row (bits 7..10)
        assert_eq!(Swizzle::B128.apply(0), 0);
        assert_eq!(Swizzle::B128.apply(128), 128 + 16);
        assert_eq!(
            Swizzle::B128.apply(7 * 128 + 16 * 2 + 4),
            7 * 128 + 16 * (2 ^ 7) + 4
        );
        assert_eq!(Swizzle::B64.apply(3 * 128 + 16), 3 * 128 + 16 * (1 ^ 3));
        assert_eq!(Swizzle::B64.apply(4 * 128 + 16), 4 * 128 + 16); // row 4 mod 4 = 0
        assert_eq!(Swizzle::B32.apply(128 + 16), 128);
        assert_eq!(Swizzle::B32.apply(2 * 128 + 16), 2 * 128 + 16);
        assert_eq!(Swizzle::None.apply(999), 999);
    }

    #[test]
    fn round_trip_and_rules() {
        let m = TensorMap::encode_tiled(
            9,
            2,
            0x1000,
            &[100, 50],
            &[256],
            &[64, 8],
            &[1, 1],
            0,
            3,
            0,
            0,
        )
        .unwrap();
        assert_eq!(TensorMap::from_bytes(&m.to_bytes()), Some(m.clone()));
        assert_eq!(m.box_bytes(), 64 * 8 * 2);
        assert!(TensorMap::encode_tiled(
            9,
            2,
            0x1000,
            &[100, 50],
            &[200],
            &[64, 8],
            &[1, 1],
            0,
            3,
            0,
            0
        )
        .is_err());
        assert!(TensorMap::encode_tiled(
            9,
            2,
            0x1000,
            &[100, 50],
            &[256],
            &[128, 8],
            &[1, 1],
            0,
            3,
            0,
            0
        )
        .is_err());
        assert!(
            TensorMap::encode_tiled(0, 1, 0x1000, &[100], &[], &[16], &[1], 0, 0, 0, 1).is_err()
        );
        assert!(
            TensorMap::encode_tiled(7, 1, 0x1008, &[100], &[], &[16], &[1], 0, 0, 0, 0).is_err()
        );
        assert!(
            TensorMap::encode_tiled(7, 1, 0x1000, &[100], &[], &[257], &[1], 0, 0, 0, 0).is_err()
        );
    }
}
