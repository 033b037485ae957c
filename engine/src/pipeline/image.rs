//! Reference image: decode, scale to cover the target size (bilinear,
//! antialiased), centre-crop, map to [-1, 1].
//!
//! The crop rule: scale `s = max(W / w_in, H / h_in)`, resize to
//! `(round(w_in·s), round(h_in·s))` with a triangle (bilinear) filter whose support
//! widens when downscaling (antialiasing), then cut the centred `W×H` window
//! (offset `floor((w' − W) / 2)`, likewise vertically). [`CropTransform`] maps
//! input-image pixel coordinates into the cropped frame, for keypoints and boxes.

use crate::error::UserError;
use anyhow::Result;
use image::{imageops::FilterType, RgbImage};
use std::path::Path;

/// Largest accepted input, in pixels (a 10000×10000 photo is accepted). Checked from the
/// header, before any pixel is decoded (a decompression bomb is refused without work).
pub const MAX_PIXELS: u64 = 16_384 * 16_384;
/// Largest accepted side, in pixels.
pub const MAX_SIDE: u32 = 65_535;
/// Largest accepted image file, in bytes (checked before the file is read).
pub const MAX_FILE_BYTES: u64 = 1 << 30;
/// Smallest accepted side, in pixels: a reference photo needs enough pixels to show a body.
pub const MIN_SIDE: u32 = 32;

/// Input-image pixel → cropped-frame pixel: `x' = x·scale − off_x`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CropTransform {
    pub scale: f64,
    pub off_x: f64,
    pub off_y: f64,
}

impl CropTransform {
    pub fn identity() -> Self {
        CropTransform {
            scale: 1.0,
            off_x: 0.0,
            off_y: 0.0,
        }
    }
    pub fn apply(&self, x: f64, y: f64) -> (f64, f64) {
        (x * self.scale - self.off_x, y * self.scale - self.off_y)
    }
}

/// Decode a PNG or JPEG file.
pub fn load_image(path: &Path) -> Result<RgbImage> {
    if let Ok(m) = std::fs::metadata(path) {
        if m.len() > MAX_FILE_BYTES {
            return Err(UserError::new(format!(
                "image {} is {} bytes, more than the {MAX_FILE_BYTES}-byte limit; pass a PNG or \
                 JPEG photo (downscale or recompress it first)",
                path.display(),
                m.len()
            ))
            .into());
        }
    }
    let bytes = std::fs::read(path).map_err(|e| {
        UserError::new(format!(
            "cannot read image {}: {e}; pass an existing PNG or JPEG with --image",
            path.display()
        ))
    })?;
    decode_image(&bytes, &path.display().to_string())
}

/// Decode PNG/JPEG bytes (`name` is used in messages).
pub fn decode_image(bytes: &[u8], name: &str) -> Result<RgbImage> {
    decode_image_within(bytes, name, MAX_PIXELS)
}

/// [`decode_image`] with a pixel budget of `max_pixels` (at most [`MAX_PIXELS`]) instead of
/// [`MAX_PIXELS`]. The `image` fuzz target uses 2^18 so that each execution stays in the
/// milliseconds: a 2 KB JPEG may legitimately claim millions of pixels, and decoding them costs
/// seconds in an instrumented build without reaching any code that a small image does not.
pub fn decode_image_within(bytes: &[u8], name: &str, max_pixels: u64) -> Result<RgbImage> {
    let max_pixels = max_pixels.min(MAX_PIXELS);
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| {
            UserError::new(format!(
                "{name}: cannot read image ({e}); re-export it as PNG or JPEG"
            ))
        })?;
    match reader.format() {
        Some(image::ImageFormat::Png) | Some(image::ImageFormat::Jpeg) => {}
        _ => {
            return Err(UserError::new(format!(
            "{name} is not a PNG or JPEG image; convert it first (e.g. `convert in.webp out.png`)"
        ))
            .into())
        }
    }
    let (w, h) = reader.into_dimensions().map_err(|e| {
        UserError::new(format!(
            "{name}: corrupt image header ({e}); re-export it as PNG or JPEG"
        ))
    })?;
    check_dimensions_within(w, h, name, max_pixels)?;
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| {
            UserError::new(format!(
                "{name}: cannot read image ({e}); re-export it as PNG or JPEG"
            ))
        })?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(w);
    limits.max_image_height = Some(h);
    limits.max_alloc = Some(max_pixels * 4 + (1 << 20));
    reader.limits(limits);
    let img = reader.decode().map_err(|e| {
        UserError::new(format!(
            "{name}: corrupt or truncated image ({e}); re-export it as PNG or JPEG"
        ))
    })?;
    if (img.width(), img.height()) != (w, h) {
        return Err(UserError::new(format!(
            "{name}: the header says {w}×{h} but the image decodes to {}×{}; re-export it",
            img.width(),
            img.height()
        ))
        .into());
    }
    Ok(img.to_rgb8())
}

/// The size rules, applied to the header's dimensions before decoding.
pub fn check_dimensions(w: u32, h: u32, name: &str) -> Result<()> {
    check_dimensions_within(w, h, name, MAX_PIXELS)
}

/// [`check_dimensions`] with a pixel budget of `max_pixels` instead of [`MAX_PIXELS`].
pub fn check_dimensions_within(w: u32, h: u32, name: &str, max_pixels: u64) -> Result<()> {
    if w == 0 || h == 0 {
        return Err(UserError::new(format!(
            "{name}: image is empty ({w}×{h}); pass a photo of at least {MIN_SIDE}×{MIN_SIDE} pixels"
        ))
        .into());
    }
    if w > MAX_SIDE || h > MAX_SIDE || w as u64 * h as u64 > max_pixels {
        return Err(UserError::new(format!(
            "{name}: image is {w}×{h}, larger than the limit ({max_pixels} pixels, \
             {MAX_SIDE} per side); downscale it first (e.g. `convert in.png -resize 4096x4096 out.png`)"
        ))
        .into());
    }
    if w < MIN_SIDE || h < MIN_SIDE {
        return Err(UserError::new(format!(
            "{name}: image is only {w}×{h} pixels; the reference photo must be at least \
             {MIN_SIDE}×{MIN_SIDE} (use a larger photo)"
        ))
        .into());
    }
    Ok(())
}

/// Scale to cover `width×height`, then centre-crop. Returns the crop and the transform.
pub fn cover_crop(img: &RgbImage, width: u32, height: u32) -> (RgbImage, CropTransform) {
    let (w, h) = img.dimensions();
    let s = (width as f64 / w as f64).max(height as f64 / h as f64);
    let nw = ((w as f64 * s).round() as u32).max(width);
    let nh = ((h as f64 * s).round() as u32).max(height);
    let ox = (nw - width) / 2;
    let oy = (nh - height) / 2;
    let (src_px, big_px) = (w as u64 * h as u64, nw as u64 * nh as u64);
    let crop = if (nw, nh) == (w, h) {
        image::imageops::crop_imm(img, ox, oy, width, height).to_image()
    } else if big_px <= src_px.max(16 * width as u64 * height as u64) {
        let resized = image::imageops::resize(img, nw, nh, FilterType::Triangle);
        image::imageops::crop_imm(&resized, ox, oy, width, height).to_image()
    } else {
        // An extreme aspect ratio (e.g. 65535×32 to 512×512) would scale the whole image up to
        // hundreds of megapixels before cropping. Resize only the source window under the crop,
        // with a margin for the filter's support.
        let (sx, sy) = (nw as f64 / w as f64, nh as f64 / h as f64);
        let x0 = ((ox as f64 / sx).floor() as u32).saturating_sub(2);
        let y0 = ((oy as f64 / sy).floor() as u32).saturating_sub(2);
        let x1 = (((ox + width) as f64 / sx).ceil() as u32 + 2).min(w);
        let y1 = (((oy + height) as f64 / sy).ceil() as u32 + 2).min(h);
        let sub = image::imageops::crop_imm(img, x0, y0, x1 - x0, y1 - y0).to_image();
        let rw = (((x1 - x0) as f64 * sx).round() as u32).max(width);
        let rh = (((y1 - y0) as f64 * sy).round() as u32).max(height);
        let resized = image::imageops::resize(&sub, rw, rh, FilterType::Triangle);
        let cx = ((ox as f64 - x0 as f64 * sx).round().max(0.0) as u32).min(rw - width);
        let cy = ((oy as f64 - y0 as f64 * sy).round().max(0.0) as u32).min(rh - height);
        image::imageops::crop_imm(&resized, cx, cy, width, height).to_image()
    };
    let t = CropTransform {
        scale: nw as f64 / w as f64,
        off_x: ox as f64,
        off_y: oy as f64,
    };
    (crop, t)
}

/// RGB image → (3, H, W) f32 in [-1, 1].
pub fn to_chw_signed(img: &RgbImage) -> Vec<f32> {
    let (w, h) = img.dimensions();
    let (w, h) = (w as usize, h as usize);
    let mut out = vec![0.0f32; 3 * w * h];
    for (x, y, p) in img.enumerate_pixels() {
        for c in 0..3 {
            out[c * w * h + y as usize * w + x as usize] = p[c] as f32 / 127.5 - 1.0;
        }
    }
    out
}

/// (3, H, W) f32 in [-1, 1] → RGB image (clamped, rounded).
pub fn from_chw_signed(data: &[f32], width: usize, height: usize) -> RgbImage {
    let mut img = RgbImage::new(width as u32, height as u32);
    for y in 0..height {
        for x in 0..width {
            let mut px = [0u8; 3];
            for (c, v) in px.iter_mut().enumerate() {
                let f = (data[c * width * height + y * width + x] + 1.0) * 127.5;
                *v = f.round().clamp(0.0, 255.0) as u8;
            }
            img.put_pixel(x as u32, y as u32, image::Rgb(px));
        }
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extreme_aspect_ratio_crops_without_a_huge_intermediate() {
        // The `image` fuzz target's slow input was a 64053×40 JPEG: covering 512×512 would
        // have scaled it to 819878×512 (420 Mpx) before cropping. A gradient checks the window
        // is the centre of the image.
        let img = RgbImage::from_fn(65_535, 32, |x, y| {
            image::Rgb([(x >> 8) as u8, (y * 8) as u8, 128])
        });
        let t0 = std::time::Instant::now();
        let (crop, t) = cover_crop(&img, 512, 512);
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(20),
            "{:?}",
            t0.elapsed()
        );
        assert_eq!(crop.dimensions(), (512, 512));
        assert!((t.scale - 16.0).abs() < 1e-9);
        // The centre column of the source is x ≈ 32767, whose red value is 127.
        let r = crop.get_pixel(256, 256)[0] as i32;
        assert!((r - 127).abs() <= 1, "red {r}");
        // Rows keep the vertical gradient: top darker than bottom.
        assert!(crop.get_pixel(256, 8)[1] < crop.get_pixel(256, 500)[1]);
    }

    /// Where the slow JPEG `bytes` decodes (it may be refused), it has `dims` and
    /// `cover_crop` gives `crop`.
    fn decodes_and_crops(bytes: &[u8], dims: (u32, u32), (w, h): (u32, u32)) {
        if let Ok(img) = decode_image(bytes, "slow.jpg") {
            assert_eq!(img.dimensions(), dims);
            let (crop, _) = cover_crop(&img, w, h);
            assert_eq!(crop.dimensions(), (w, h));
        }
    }

    #[test]
    fn fuzz_regression_64053x40_jpeg() {
        // The input the `image` fuzz target timed out on (fuzz/regressions/image/).
        let bytes = include_bytes!("../../../fuzz/regressions/image/slow-64053x40.jpg");
        decodes_and_crops(bytes, (64053, 40), (512, 512));
    }

    #[test]
    fn fuzz_regression_62512x86_jpeg_and_the_fuzz_pixel_budget() {
        // A 2 KB JPEG claiming 62512×86 (5.4 Mpx): 1.4 s in the instrumented fuzz build, so
        // the loaded machine hit libFuzzer's 10 s timeout. Not a hang; it decodes and crops
        // under the full limit, and the fuzz target's 2^18-pixel budget refuses it up front.
        let bytes = include_bytes!("../../../fuzz/regressions/image/slow-62512x86.jpg");
        decodes_and_crops(bytes, (62512, 86), (64, 48));
        let err = decode_image_within(bytes, "slow.jpg", 1 << 18)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("62512×86") && err.contains("262144 pixels"),
            "{err}"
        );
        assert!(err.contains("downscale"), "{err}");
    }

    #[test]
    fn fuzz_regression_jpeg_dc_quantisation_overflow() {
        // The `image` fuzz target's crash: a JPEG whose DC prediction times its quantisation step
        // overflows i32 in zune-jpeg 0.5.15 (a panic where overflow checks are on). Cargo.toml
        // turns the checks off for zune-jpeg (upstream now wraps); decoding must not panic.
        let bytes = include_bytes!("../../../fuzz/regressions/image/overflow-dc-quant.jpg");
        if let Ok(img) = decode_image(bytes, "overflow.jpg") {
            let (crop, _) = cover_crop(&img, 64, 48);
            assert_eq!(crop.dimensions(), (64, 48));
        }
    }

    #[test]
    fn windowed_and_whole_resize_agree_where_both_apply() {
        // 8000×40 to 256×256 takes the window path; compare with resizing the whole image.
        // Smooth content: the window path may shift the sampling grid by under half an output
        // pixel (its offsets are rounded), which only a smooth image leaves nearly unchanged.
        let img = RgbImage::from_fn(8000, 40, |x, y| {
            let v = |f: f64| (128.0 + 100.0 * f.sin()) as u8;
            image::Rgb([v(x as f64 / 30.0), (y * 6) as u8, v(x as f64 / 77.0 + 1.0)])
        });
        let (crop, _) = cover_crop(&img, 256, 256);
        let s = 256.0 / 40.0;
        let (nw, nh) = ((8000.0 * s) as u32, 256);
        let whole = image::imageops::resize(&img, nw, nh, FilterType::Triangle);
        let ox = (nw - 256) / 2;
        let want = image::imageops::crop_imm(&whole, ox, 0, 256, 256).to_image();
        let (mut se, mut sw) = (0f64, 0f64);
        for (a, b) in crop.pixels().zip(want.pixels()) {
            for c in 0..3 {
                se += (a[c] as f64 - b[c] as f64).powi(2);
                sw += (b[c] as f64).powi(2);
            }
        }
        let rel = (se / sw).sqrt();
        assert!(rel < 2e-2, "rel L2 {rel}");
    }

    #[test]
    fn cover_crop_centres_a_wide_image() {
        let img = RgbImage::from_fn(400, 200, |x, _| image::Rgb([(x % 256) as u8, 0, 0]));
        let (crop, t) = cover_crop(&img, 128, 128);
        assert_eq!(crop.dimensions(), (128, 128));
        assert!((t.scale - 0.64).abs() < 1e-9);
        // The input's centre maps to the crop's centre.
        let (cx, cy) = t.apply(200.0, 100.0);
        assert!(
            (cx - 64.0).abs() <= 1.0 && (cy - 64.0).abs() <= 1.0,
            "{cx} {cy}"
        );
    }

    #[test]
    fn signed_round_trip() {
        let img = RgbImage::from_fn(5, 3, |x, y| image::Rgb([x as u8 * 50, y as u8 * 80, 255]));
        let back = from_chw_signed(&to_chw_signed(&img), 5, 3);
        assert_eq!(img, back);
    }
}
