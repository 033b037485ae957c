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
    check_dimensions(w, h, name)?;
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
    limits.max_alloc = Some(MAX_PIXELS * 4 + (1 << 20));
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
    if w == 0 || h == 0 {
        return Err(UserError::new(format!(
            "{name}: image is empty ({w}×{h}); pass a photo of at least {MIN_SIDE}×{MIN_SIDE} pixels"
        ))
        .into());
    }
    if w > MAX_SIDE || h > MAX_SIDE || w as u64 * h as u64 > MAX_PIXELS {
        return Err(UserError::new(format!(
            "{name}: image is {w}×{h}, larger than the limit ({MAX_PIXELS} pixels, \
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
    let resized = if (nw, nh) == (w, h) {
        img.clone()
    } else {
        image::imageops::resize(img, nw, nh, FilterType::Triangle)
    };
    let ox = (nw - width) / 2;
    let oy = (nh - height) / 2;
    let crop = image::imageops::crop_imm(&resized, ox, oy, width, height).to_image();
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
