//! CUDA driver result codes (`CUresult`, values from `cuda.h` 12.4) with their names and strings.

use std::ffi::{c_char, CStr};

/// `CUresult` as the C ABI sees it (a 32-bit enum).
pub type CUresult = u32;

/// Is this a "sticky" error that poisons the context (as on real hardware)?
pub fn is_sticky(code: CUresult) -> bool {
    matches!(code, 700 | 710 | 714..=719)
}

/// One line per code, `NAME = code => "description"`: defines `pub const NAME` and the
/// table row of the C API (name = `stringify!(NAME)`).
macro_rules! codes {
    ($($name:ident = $code:literal => $msg:literal,)*) => {
        $(pub const $name: CUresult = $code;)*

        /// (code, name, description), NUL-terminated for the C API.
        static TABLE: &[(CUresult, &CStr, &CStr)] = &[
            $(($code, match CStr::from_bytes_with_nul(concat!(stringify!($name), "\0").as_bytes()) {
                Ok(s) => s, Err(_) => panic!() },
               match CStr::from_bytes_with_nul(concat!($msg, "\0").as_bytes()) {
                Ok(s) => s, Err(_) => panic!() })),*
        ];
    };
}

codes! {
    CUDA_SUCCESS = 0 => "no error",
    CUDA_ERROR_INVALID_VALUE = 1 => "invalid argument",
    CUDA_ERROR_OUT_OF_MEMORY = 2 => "out of memory",
    CUDA_ERROR_NOT_INITIALIZED = 3 => "initialization error",
    CUDA_ERROR_DEINITIALIZED = 4 => "driver shutting down",
    CUDA_ERROR_STUB_LIBRARY = 34 => "CUDA driver is a stub library",
    CUDA_ERROR_NO_DEVICE = 100 => "no CUDA-capable device is detected",
    CUDA_ERROR_INVALID_DEVICE = 101 => "invalid device ordinal",
    CUDA_ERROR_INVALID_IMAGE = 200 => "device kernel image is invalid",
    CUDA_ERROR_INVALID_CONTEXT = 201 => "invalid device context",
    CUDA_ERROR_NO_BINARY_FOR_GPU = 209 => "no kernel image is available for execution on the device",
    CUDA_ERROR_INVALID_PTX = 218 => "a PTX JIT compilation failed",
    CUDA_ERROR_FILE_NOT_FOUND = 301 => "file not found",
    CUDA_ERROR_INVALID_HANDLE = 400 => "invalid resource handle",
    CUDA_ERROR_ILLEGAL_STATE = 401 => "the operation cannot be performed in the present state",
    CUDA_ERROR_NOT_FOUND = 500 => "named symbol not found",
    CUDA_ERROR_NOT_READY = 600 => "device not ready",
    CUDA_ERROR_ILLEGAL_ADDRESS = 700 => "an illegal memory access was encountered",
    CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES = 701 => "too many resources requested for launch",
    CUDA_ERROR_LAUNCH_TIMEOUT = 702 => "the launch timed out and was terminated",
    CUDA_ERROR_CONTEXT_IS_DESTROYED = 709 => "context is destroyed",
    CUDA_ERROR_ASSERT = 710 => "device-side assert triggered",
    CUDA_ERROR_ILLEGAL_INSTRUCTION = 715 => "an illegal instruction was encountered",
    CUDA_ERROR_MISALIGNED_ADDRESS = 716 => "misaligned address",
    CUDA_ERROR_LAUNCH_FAILED = 719 => "unspecified launch failure",
    CUDA_ERROR_NOT_PERMITTED = 800 => "operation not permitted",
    CUDA_ERROR_NOT_SUPPORTED = 801 => "operation not supported",
    CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED = 900 => "operation not permitted when stream is capturing",
    CUDA_ERROR_STREAM_CAPTURE_INVALIDATED = 901 => "operation failed due to a previous error during capture",
    CUDA_ERROR_STREAM_CAPTURE_MERGE = 902 => "operation would result in a merge of separate capture sequences",
    CUDA_ERROR_STREAM_CAPTURE_UNMATCHED = 903 => "capture was not ended in the same stream as it began",
    CUDA_ERROR_STREAM_CAPTURE_UNJOINED = 904 => "capturing stream has unjoined work",
    CUDA_ERROR_STREAM_CAPTURE_ISOLATION = 905 => "dependency created on uncaptured work in another stream",
    CUDA_ERROR_STREAM_CAPTURE_IMPLICIT = 906 => "operation would make the legacy stream depend on a capturing blocking stream",
    CUDA_ERROR_CAPTURED_EVENT = 907 => "operation not permitted on an event last recorded in a capturing stream",
    CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD = 908 => "attempt to terminate a thread-local capture sequence from another thread",
    CUDA_ERROR_UNKNOWN = 999 => "unknown error",
}

/// Name and description of a code, `None` when the code is not one we know.
pub fn describe(code: CUresult) -> Option<(*const c_char, *const c_char)> {
    TABLE
        .iter()
        .find(|(c, _, _)| *c == code)
        .map(|(_, n, s)| (n.as_ptr(), s.as_ptr()))
}

/// Name of a code as a Rust string (for messages).
pub fn name(code: CUresult) -> &'static str {
    TABLE
        .iter()
        .find(|(c, _, _)| *c == code)
        .and_then(|(_, n, _)| n.to_str().ok())
        .unwrap_or("CUDA_ERROR_?")
}
