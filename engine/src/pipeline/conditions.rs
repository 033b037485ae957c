//! Pose and region conditions: keypoints/boxes JSON, their defaults, the
//! skeleton and movement maps, identity crops and the hand clarity score
//! (spec section 6).
//!
//! JSON format (input-image pixels, every field optional):
//! ```json
//! {"keypoints": [[x, y, conf], ... 18 in OpenPose COCO-18 order],
//!  "face": [x0, y0, x1, y1], "hands": [[x0, y0, x1, y1], [x0, y0, x1, y1]],
//!  "movement": [x0, y0, x1, y1]}
//! ```
//! Missing fields get defaults relative to the cropped frame (see [`Conditions::resolve`]).

use crate::error::UserError;
use crate::pipeline::image::CropTransform;
use anyhow::Result;
use image::{imageops::FilterType, GrayImage, Rgb, RgbImage};
use serde::Deserialize;
use std::path::Path;

/// COCO-18 keypoint count.
pub const NUM_KEYPOINTS: usize = 18;
/// Joints below this confidence are not drawn.
pub const MIN_CONF: f64 = 0.3;
/// Limb width of the skeleton map, in pixels.
pub const LIMB_WIDTH: f64 = 4.0;

/// OpenPose's COCO-18 limbs (0-based joint pairs), in drawing order.
pub const LIMBS: [(usize, usize); 17] = [
    (1, 2),
    (1, 5),
    (2, 3),
    (3, 4),
    (5, 6),
    (6, 7),
    (1, 8),
    (8, 9),
    (9, 10),
    (1, 11),
    (11, 12),
    (12, 13),
    (1, 0),
    (0, 14),
    (14, 16),
    (0, 15),
    (15, 17),
];

/// OpenPose's limb colours (RGB), one per limb above.
pub const LIMB_COLORS: [[u8; 3]; 17] = [
    [255, 0, 0],
    [255, 85, 0],
    [255, 170, 0],
    [255, 255, 0],
    [170, 255, 0],
    [85, 255, 0],
    [0, 255, 0],
    [0, 255, 85],
    [0, 255, 170],
    [0, 255, 255],
    [0, 170, 255],
    [0, 85, 255],
    [0, 0, 255],
    [85, 0, 255],
    [170, 0, 255],
    [255, 0, 255],
    [255, 0, 170],
];

/// The upright half-body template (fractions of the frame; conf 0 = not drawn):
/// nose, neck, right shoulder/elbow/wrist, left shoulder/elbow/wrist, right
/// hip/knee/ankle, left hip/knee/ankle, right/left eye, right/left ear.
/// "Right" is the person's right, on the image's left (OpenPose convention).
pub const TEMPLATE: [[f64; 3]; NUM_KEYPOINTS] = [
    [0.50, 0.20, 1.0],
    [0.50, 0.38, 1.0],
    [0.35, 0.40, 1.0],
    [0.28, 0.58, 1.0],
    [0.25, 0.75, 1.0],
    [0.65, 0.40, 1.0],
    [0.72, 0.58, 1.0],
    [0.75, 0.75, 1.0],
    [0.42, 0.85, 1.0],
    [0.42, 1.00, 0.0],
    [0.42, 1.00, 0.0],
    [0.58, 0.85, 1.0],
    [0.58, 1.00, 0.0],
    [0.58, 1.00, 0.0],
    [0.47, 0.17, 1.0],
    [0.53, 0.17, 1.0],
    [0.44, 0.19, 1.0],
    [0.56, 0.19, 1.0],
];

/// A box `[x0, y0, x1, y1]` in pixels.
pub type Box2 = [f64; 4];

/// The optional JSON a user passes with `--pose`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoseFile {
    pub keypoints: Option<Vec<[f64; 3]>>,
    pub face: Option<Box2>,
    pub hands: Option<Vec<Box2>>,
    pub movement: Option<Box2>,
}

/// Largest accepted pose file (checked before it is read).
pub const MAX_POSE_BYTES: u64 = 1 << 20;

impl PoseFile {
    pub fn load(path: &Path) -> Result<PoseFile> {
        if !path.is_file() {
            return Err(UserError::new(format!(
                "cannot read pose file {}: no such file; pass an existing JSON file with --pose",
                path.display()
            ))
            .into());
        }
        let text = cyberhost_weights::limits::read_text_capped(path, MAX_POSE_BYTES, "pose file")
            .map_err(|e| UserError::new(format!("{e:#}")))?;
        PoseFile::parse(&text, &path.display().to_string())
    }

    /// Parse and check pose JSON text (`name` is used in messages).
    pub fn parse(text: &str, name: &str) -> Result<PoseFile> {
        if ["NaN", "Infinity"].iter().any(|t| text.contains(t)) {
            return Err(UserError::new(format!(
                "{name}: the pose JSON holds NaN or Infinity, which are not numbers in JSON; \
                 write finite pixel coordinates (drop undetected keypoints or give them conf 0)"
            ))
            .into());
        }
        let p: PoseFile = serde_json::from_str(text).map_err(|e| {
            UserError::new(format!(
                "{name}: not a valid pose JSON ({e}); expected {{\"keypoints\": [[x,y,conf] ×18], \"face\": [x0,y0,x1,y1], \"hands\": [[..],[..]], \"movement\": [..]}}"
            ))
        })?;
        if let Some(k) = &p.keypoints {
            if k.len() != NUM_KEYPOINTS {
                return Err(UserError::new(format!(
                    "{name}: `keypoints` has {} entries; OpenPose COCO-18 needs exactly 18 [x, y, conf]",
                    k.len()
                ))
                .into());
            }
            if let Some((i, kp)) = k
                .iter()
                .enumerate()
                .find(|(_, kp)| kp.iter().any(|v| !v.is_finite()) || !(0.0..=1.0).contains(&kp[2]))
            {
                return Err(UserError::new(format!(
                    "{name}: keypoint {i} is {kp:?}; x and y must be finite pixel coordinates and \
                     conf a number in [0, 1]"
                ))
                .into());
            }
        }
        if let Some(h) = &p.hands {
            if h.len() != 2 {
                return Err(UserError::new(format!(
                    "{name}: `hands` must hold exactly two boxes ([left, right])"
                ))
                .into());
            }
        }
        for b in p.boxes() {
            if b.iter().any(|v| !v.is_finite()) {
                return Err(UserError::new(format!(
                    "{name}: box {b:?} holds a value that is not a finite number; boxes are \
                     [x0, y0, x1, y1] in input-image pixels"
                ))
                .into());
            }
            if !(b[2] > b[0] && b[3] > b[1]) {
                return Err(UserError::new(format!(
                    "{name}: box {b:?} is empty; boxes are [x0, y0, x1, y1] with x1 > x0 and y1 > y0"
                ))
                .into());
            }
        }
        Ok(p)
    }

    /// Every box in the file (face, movement, hands).
    fn boxes(&self) -> impl Iterator<Item = &Box2> {
        self.face
            .iter()
            .chain(self.movement.iter())
            .chain(self.hands.iter().flatten())
    }

    /// Check the coordinates against the input image (`width×height` pixels): every box must
    /// overlap the image, and every keypoint with conf > 0 must lie inside it.
    pub fn check_against_image(&self, width: u32, height: u32, name: &str) -> Result<()> {
        let (w, h) = (width as f64, height as f64);
        for b in self.boxes() {
            if b[2] <= 0.0 || b[3] <= 0.0 || b[0] >= w || b[1] >= h {
                return Err(UserError::new(format!(
                    "{name}: box {b:?} lies outside the {width}×{height} input image; pose \
                     coordinates are pixels of the --image you pass (not of the output video)"
                ))
                .into());
            }
        }
        if let Some(k) = &self.keypoints {
            if let Some((i, kp)) = k.iter().enumerate().find(|(_, kp)| {
                kp[2] > 0.0 && !((0.0..=w).contains(&kp[0]) && (0.0..=h).contains(&kp[1]))
            }) {
                return Err(UserError::new(format!(
                    "{name}: keypoint {i} {kp:?} lies outside the {width}×{height} input image; \
                     use input-image pixels, or conf 0 for a keypoint that is not visible"
                ))
                .into());
            }
        }
        Ok(())
    }
}

/// Conditions in cropped-frame pixels, every field resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct Conditions {
    pub keypoints: [[f64; 3]; NUM_KEYPOINTS],
    pub face: Box2,
    pub hands: [Box2; 2],
    pub movement: Box2,
    /// Names of the fields that fell back to defaults (logged once by the pipeline).
    pub defaulted: Vec<&'static str>,
}

impl Conditions {
    /// Map the user's fields into the `width×height` crop and fill the rest with defaults.
    pub fn resolve(file: &PoseFile, t: &CropTransform, width: usize, height: usize) -> Conditions {
        let (w, h) = (width as f64, height as f64);
        let map_box = |b: &Box2| {
            let (x0, y0) = t.apply(b[0], b[1]);
            let (x1, y1) = t.apply(b[2], b[3]);
            [x0, y0, x1, y1]
        };
        let frac_box = |x0: f64, y0: f64, x1: f64, y1: f64| [x0 * w, y0 * h, x1 * w, y1 * h];
        let mut defaulted = Vec::new();
        let keypoints = match &file.keypoints {
            Some(k) => {
                let mut out = [[0.0; 3]; NUM_KEYPOINTS];
                for (o, p) in out.iter_mut().zip(k) {
                    let (x, y) = t.apply(p[0], p[1]);
                    *o = [x, y, p[2]];
                }
                out
            }
            None => {
                defaulted.push("keypoints");
                TEMPLATE.map(|[x, y, c]| [x * w, y * h, c])
            }
        };
        let face = file.face.as_ref().map(map_box).unwrap_or_else(|| {
            defaulted.push("face");
            frac_box(0.35, 0.05, 0.65, 0.35)
        });
        let hands = match &file.hands {
            Some(v) => [map_box(&v[0]), map_box(&v[1])],
            None => {
                defaulted.push("hands");
                [
                    frac_box(0.10, 0.55, 0.40, 0.95),
                    frac_box(0.60, 0.55, 0.90, 0.95),
                ]
            }
        };
        let movement = match &file.movement {
            Some(b) => clip_box(map_box(b), w, h),
            None => {
                defaulted.push("movement");
                chest_box(&keypoints, w, h)
            }
        };
        Conditions {
            keypoints,
            face,
            hands,
            movement,
            defaulted,
        }
    }
}

fn clip_box(b: Box2, w: f64, h: f64) -> Box2 {
    [
        b[0].clamp(0.0, w),
        b[1].clamp(0.0, h),
        b[2].clamp(0.0, w),
        b[3].clamp(0.0, h),
    ]
}

/// The chest box (shoulders to hips) enlarged 1.5× about its centre, clipped.
/// Falls back to the template's joints where the keypoints are not confident.
pub fn chest_box(k: &[[f64; 3]; NUM_KEYPOINTS], w: f64, h: f64) -> Box2 {
    let pick = |i: usize| {
        if k[i][2] >= MIN_CONF {
            [k[i][0], k[i][1]]
        } else {
            [TEMPLATE[i][0] * w, TEMPLATE[i][1] * h]
        }
    };
    let pts = [pick(2), pick(5), pick(8), pick(11)];
    let x0 = pts.iter().map(|p| p[0]).fold(f64::INFINITY, f64::min);
    let x1 = pts.iter().map(|p| p[0]).fold(f64::NEG_INFINITY, f64::max);
    let y0 = pts.iter().map(|p| p[1]).fold(f64::INFINITY, f64::min);
    let y1 = pts.iter().map(|p| p[1]).fold(f64::NEG_INFINITY, f64::max);
    let (cx, cy) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
    let (hw, hh) = ((x1 - x0) * 0.75, (y1 - y0) * 0.75);
    clip_box([cx - hw, cy - hh, cx + hw, cy + hh], w, h)
}

/// The skeleton map: limbs 4 px wide in OpenPose colours on black.
pub fn render_skeleton(k: &[[f64; 3]; NUM_KEYPOINTS], width: usize, height: usize) -> RgbImage {
    let mut img = RgbImage::new(width as u32, height as u32);
    for (limb, color) in LIMBS.iter().zip(LIMB_COLORS) {
        let (a, b) = (k[limb.0], k[limb.1]);
        if a[2] < MIN_CONF || b[2] < MIN_CONF {
            continue;
        }
        draw_segment(&mut img, (a[0], a[1]), (b[0], b[1]), LIMB_WIDTH, Rgb(color));
    }
    img
}

/// Pixels whose centre lies within `width/2` of the segment are set.
fn draw_segment(img: &mut RgbImage, a: (f64, f64), b: (f64, f64), width: f64, c: Rgb<u8>) {
    let r = width / 2.0;
    let (w, h) = (img.width() as i64, img.height() as i64);
    let x0 = (a.0.min(b.0) - r).floor().max(0.0) as i64;
    let x1 = ((a.0.max(b.0) + r).ceil() as i64).min(w - 1);
    let y0 = (a.1.min(b.1) - r).floor().max(0.0) as i64;
    let y1 = ((a.1.max(b.1) + r).ceil() as i64).min(h - 1);
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len2 = dx * dx + dy * dy;
    for y in y0..=y1 {
        for x in x0..=x1 {
            let (px, py) = (x as f64 + 0.5, y as f64 + 0.5);
            let t = if len2 > 0.0 {
                (((px - a.0) * dx + (py - a.1) * dy) / len2).clamp(0.0, 1.0)
            } else {
                0.0
            };
            let (qx, qy) = (a.0 + t * dx - px, a.1 + t * dy - py);
            if qx * qx + qy * qy <= r * r {
                img.put_pixel(x as u32, y as u32, c);
            }
        }
    }
}

/// The body movement map: the box filled white on black.
pub fn render_box(b: &Box2, width: usize, height: usize) -> RgbImage {
    RgbImage::from_fn(width as u32, height as u32, |x, y| {
        let (px, py) = (x as f64 + 0.5, y as f64 + 0.5);
        if px >= b[0] && px < b[2] && py >= b[1] && py < b[3] {
            Rgb([255, 255, 255])
        } else {
            Rgb([0, 0, 0])
        }
    })
}

/// Square the box about its centre (the longer side), cut it from `img`
/// (black outside the image) and resize to `size×size`.
pub fn square_crop(img: &RgbImage, b: &Box2, size: u32) -> RgbImage {
    let (cx, cy) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
    let side = (b[2] - b[0]).max(b[3] - b[1]).max(1.0);
    let (x0, y0) = (
        (cx - side / 2.0).round() as i64,
        (cy - side / 2.0).round() as i64,
    );
    let s = side.round().max(1.0) as u32;
    let mut sq = RgbImage::new(s, s);
    for y in 0..s {
        for x in 0..s {
            let (sx, sy) = (x0 + x as i64, y0 + y as i64);
            if sx >= 0 && sy >= 0 && (sx as u32) < img.width() && (sy as u32) < img.height() {
                sq.put_pixel(x, y, *img.get_pixel(sx as u32, sy as u32));
            }
        }
    }
    if s == size {
        sq
    } else {
        image::imageops::resize(&sq, size, size, FilterType::Triangle)
    }
}

/// Hand clarity of one crop: std of the 3×3 Laplacian of the grayscale crop at
/// 128×128 (pixels in [0, 1]), divided by 0.25 and clipped to [0, 1].
pub fn hand_clarity(crop: &RgbImage) -> f64 {
    let g: GrayImage = image::imageops::grayscale(crop);
    let g = if g.dimensions() == (128, 128) {
        g
    } else {
        image::imageops::resize(&g, 128, 128, FilterType::Triangle)
    };
    let px = |x: u32, y: u32| g.get_pixel(x, y)[0] as f64 / 255.0;
    let mut vals = Vec::with_capacity(126 * 126);
    for y in 1..127 {
        for x in 1..127 {
            vals.push(px(x, y - 1) + px(x - 1, y) + px(x + 1, y) + px(x, y + 1) - 4.0 * px(x, y));
        }
    }
    let n = vals.len() as f64;
    let mean = vals.iter().sum::<f64>() / n;
    let std = (vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
    (std / 0.25).clamp(0.0, 1.0)
}

/// RGB image → (3, H, W) f32 in [-1, 1] (maps are encoded like images).
pub fn map_to_chw(img: &RgbImage) -> Vec<f32> {
    crate::pipeline::image::to_chw_signed(img)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_every_field() {
        let c = Conditions::resolve(&PoseFile::default(), &CropTransform::identity(), 128, 128);
        assert_eq!(c.defaulted, vec!["keypoints", "face", "hands", "movement"]);
        let m = c.movement;
        assert!(m[0] >= 0.0 && m[2] <= 128.0 && m[2] > m[0] && m[3] > m[1]);
    }

    #[test]
    fn skeleton_skips_low_confidence_joints() {
        let mut k = TEMPLATE.map(|[x, y, c]| [x * 64.0, y * 64.0, c]);
        let full = render_skeleton(&k, 64, 64);
        for j in k.iter_mut() {
            j[2] = 0.1;
        }
        let none = render_skeleton(&k, 64, 64);
        assert!(full.pixels().any(|p| p.0 != [0, 0, 0]));
        assert!(none.pixels().all(|p| p.0 == [0, 0, 0]));
    }

    #[test]
    fn clarity_ranks_sharp_above_blurred() {
        let sharp = RgbImage::from_fn(128, 128, |x, y| {
            let v = if (x / 4 + y / 4) % 2 == 0 { 230 } else { 25 };
            Rgb([v, v, v])
        });
        let blurred = image::imageops::blur(&sharp, 3.0);
        let (s, b) = (hand_clarity(&sharp), hand_clarity(&blurred));
        assert!(s > b, "sharp {s} <= blurred {b}");
    }
}
