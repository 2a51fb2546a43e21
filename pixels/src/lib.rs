//! Imagegram's image engine: the conversion itself, pure, in a crate of its
//! own (no AWS, no database; built optimised in dev too, see the workspace's
//! `Cargo.toml`). `imagegram::pipeline::convert` is this crate. The bytes of an original in (streamed, never
//! held whole), a 600x600 baseline JPEG out, or a reason a person can act on.
//!
//! Order of work, cheapest refusal first: sniff the format from the magic
//! bytes; read the header; refuse dimensions or decoded sizes over the limits
//! *before* anything is allocated for pixels; then decode only as much as
//! the result needs, into a [`Staged`] image a little over twice the target
//! size, never the full resolution:
//!
//! - JPEG ([`jpeg`]): libjpeg-turbo decodes at 1/8, 1/4, ... scale in the DCT
//!   domain, and rows past the centred square are never decoded. A
//!   progressive JPEG is read by our own decoder ([`progressive`]), which
//!   keeps only the coefficients the square needs (the DC alone when the
//!   square is at least 4800 wide): libjpeg would keep every coefficient
//!   of it. Arithmetic-coded progressive files go to libjpeg up to 48 MiB
//!   of coefficients and are refused past that.
//! - PNG ([`png`]) and BMP ([`bmp`], every encoding, RLE included): rows
//!   are decoded one at a time and box-averaged as they arrive
//!   ([`rows::Shrinker`]; an interlaced PNG's passes into
//!   [`rows::Scatter`]), so memory is one row plus the staged image
//!   whatever the input's size.
//!
//! Then [`finish`]: Lanczos3 to 600x600 (SIMD, `fast_image_resize`) on the
//! centred square, EXIF rotation on the small result (a centred square crop
//! commutes with rotation), and a 4:2:0 baseline JPEG with optimised Huffman
//! tables. Alpha is flattened onto white row by row as pixels arrive.
//!
//! libjpeg reports fatal errors by unwinding; [`convert_reader`] contains
//! every panic of the decoders and turns it into a [`Rejection`].

mod bmp;
mod jpeg;
mod png;
mod progressive;
mod rows;

use std::io::{BufRead, Read};
use std::panic::{AssertUnwindSafe, catch_unwind};

use fast_image_resize as fir;
use image::metadata::Orientation;
use imagegram_formats::ImageFormat;

/// Side of the served square.
pub const SIDE: u32 = 600;
/// JPEG quality of the served image.
pub const QUALITY: u8 = 85;

/// What the converter refuses before decoding.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Longest side accepted, in pixels.
    pub max_side: u32,
    /// Most pixels accepted (width x height).
    pub max_pixels: u64,
    /// Most bytes a decoder may hold for the picture: what the progressive
    /// decoder keeps (coefficients, their history, the square), and the
    /// `png` crate's own allocations. The other paths stream: a row and
    /// the staged image, whatever the picture's size.
    pub max_decoded_bytes: u64,
}

impl Default for Limits {
    /// 16000x12000 (a 192 MP camera) passes; the decompression bombs of the
    /// tests (40000x40000, 50000x50000) do not.
    fn default() -> Self {
        Limits {
            max_side: 20_000,
            max_pixels: 200_000_000,
            // The progressive decoder's worst case is ~92 MiB (a 4799x20000
            // CMYK file); the converter's bound is 128 MiB.
            max_decoded_bytes: 112 * 1024 * 1024,
        }
    }
}

/// Why an image cannot be converted: final, never worth a retry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Rejection(pub String);

fn reject(s: impl Into<String>) -> Rejection {
    Rejection(s.into())
}

/// The format, from the bytes alone: the name and the declared type are the
/// client's word, not the file's.
pub fn sniff(bytes: &[u8]) -> Result<ImageFormat, Rejection> {
    if let Some(f) = ImageFormat::sniff(bytes) {
        return Ok(f);
    }
    let accepted = ImageFormat::names();
    Err(match bytes {
        b if b.starts_with(b"GIF8") => {
            reject(format!("GIF images are not supported; upload a {accepted}"))
        }
        b if b.len() >= 12 && &b[..4] == b"RIFF" && &b[8..12] == b"WEBP" => reject(format!(
            "WebP images are not supported; upload a {accepted}"
        )),
        [] => reject("the upload is empty"),
        _ => reject(format!("the upload is not a {accepted} image")),
    })
}

/// A converted image, and what it was made from.
#[derive(Debug)]
pub struct Converted {
    /// The 600x600 baseline JPEG.
    pub jpeg: Vec<u8>,
    /// The original's format, as sniffed: `JPEG`, `PNG` or `BMP`.
    pub format: &'static str,
    /// The original's width x height.
    pub pixels: u64,
    /// The ThumbHash of the 600x600 image, base64: a placeholder clients
    /// show while it loads.
    pub thumbhash: String,
}

/// Converts an original held in memory; see [`convert_reader`].
pub fn convert(bytes: &[u8], limits: &Limits) -> Result<Vec<u8>, Rejection> {
    convert_reader(bytes, limits).map(|c| c.jpeg)
}

/// Converts an original read from `input` once, front to back: the S3 body
/// as it downloads, or a file. Memory stays near the staged image's size
/// (a few MiB to ~20 MiB), not the input's.
pub fn convert_reader<R: BufRead>(mut input: R, limits: &Limits) -> Result<Converted, Rejection> {
    let mut head = Vec::with_capacity(MAGIC_BYTES);
    (&mut input)
        .take(MAGIC_BYTES as u64)
        .read_to_end(&mut head)
        .map_err(|e| reject(format!("read failed ({e})")))?;
    let format = sniff(&head)?;
    let name = format.name();
    // The sniffed bytes go back in front of the rest.
    let input = std::io::Cursor::new(head).chain(input);
    let staged = catch_unwind(AssertUnwindSafe(|| match format {
        ImageFormat::Jpeg => jpeg::stage(input, limits),
        ImageFormat::Png => png::stage(input, limits),
        ImageFormat::Bmp => bmp::stage(input, limits),
    }))
    .map_err(|panic| corrupt(name, panic_message(&*panic)))??;
    let pixels = u64::from(staged.source.0) * u64::from(staged.source.1);
    let (jpeg, thumbhash) = catch_unwind(AssertUnwindSafe(|| finish(staged)))
        .map_err(|panic| reject(format!("encoding failed ({})", panic_message(&*panic))))??;
    Ok(Converted {
        jpeg,
        format: name,
        pixels,
        thumbhash,
    })
}

/// What [`sniff`] needs to tell the formats apart.
const MAGIC_BYTES: usize = 12;

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "decoder failure".into())
}

fn corrupt(name: &str, detail: impl std::fmt::Display) -> Rejection {
    reject(format!(
        "the {name} image is corrupt or truncated ({detail})"
    ))
}

/// Refuses a header's dimensions before any pixel memory is taken (a
/// streamed path, whose memory does not grow with them).
fn check_dimensions(name: &str, w: u64, h: u64, limits: &Limits) -> Result<(), Rejection> {
    check_decoded(name, w, h, 0, limits)
}

/// Refuses dimensions, and what a decoder would hold (`decoded` bytes),
/// before it is allocated.
fn check_decoded(
    name: &str,
    w: u64,
    h: u64,
    decoded: u64,
    limits: &Limits,
) -> Result<(), Rejection> {
    if w == 0 || h == 0 {
        return Err(reject(format!("the {name} image has no pixels")));
    }
    if w > u64::from(limits.max_side) || h > u64::from(limits.max_side) || w * h > limits.max_pixels
    {
        return Err(reject(format!(
            "the image is {w}x{h} pixels; at most {} pixels a side and {} megapixels are accepted",
            limits.max_side,
            limits.max_pixels / 1_000_000
        )));
    }
    if decoded > limits.max_decoded_bytes {
        return Err(reject(format!(
            "the image would take {} MiB decoded; at most {} MiB is accepted",
            decoded >> 20,
            limits.max_decoded_bytes >> 20
        )));
    }
    Ok(())
}

/// The centred square of a `w` x `h` image: left, top, side.
fn centre_square(w: u32, h: u32) -> (u32, u32, u32) {
    let side = w.min(h);
    ((w - side) / 2, (h - side) / 2, side)
}

/// Where the centred square of a `w` x `h` image lies in the same image
/// decoded at `scale` (`out_w` x `out_h` pixels): the whole decoded pixels
/// covering it (`cols`, `rows`) and the square within them (the crop a
/// [`Staged`] image carries).
struct ScaledSquare {
    cols: std::ops::Range<usize>,
    rows: std::ops::Range<usize>,
    crop: (f64, f64, f64),
}

fn scaled_square(w: u32, h: u32, scale: f64, out_w: usize, out_h: usize) -> ScaledSquare {
    let (x0, y0, side) = centre_square(w, h);
    let (left, top, sside) = (
        f64::from(x0) * scale,
        f64::from(y0) * scale,
        f64::from(side) * scale,
    );
    let (c0, c1) = (
        left.floor() as usize,
        ((left + sside).ceil() as usize).min(out_w),
    );
    let (r0, r1) = (
        top.floor() as usize,
        ((top + sside).ceil() as usize).min(out_h),
    );
    ScaledSquare {
        cols: c0..c1,
        rows: r0..r1,
        crop: (left - c0 as f64, top - r0 as f64, sside),
    }
}

/// The smallest side worth staging: below twice the target the final
/// Lanczos3 pass has too little to work with and block shrinking shows.
const STAGE_MIN: u32 = 2 * SIDE;

/// An image on its way out: RGB8 rows, already shrunk to about 1-2x
/// [`STAGE_MIN`] where the source was bigger, and where in it the centred
/// square lies (fractional: scaled decoding does not land on whole pixels).
pub(crate) struct Staged {
    rgb: Vec<u8>,
    width: u32,
    height: u32,
    /// left, top, side of the square to resample, in staged pixels.
    crop: (f64, f64, f64),
    orientation: Orientation,
    /// The original's width and height.
    source: (u32, u32),
}

/// Resample the square to SIDE x SIDE, rotate, encode; and the result's
/// ThumbHash.
fn finish(staged: Staged) -> Result<(Vec<u8>, String), Rejection> {
    let internal = |e: &dyn std::fmt::Display| reject(format!("resampling failed ({e})"));
    let src = fir::images::Image::from_vec_u8(
        staged.width,
        staged.height,
        staged.rgb,
        fir::PixelType::U8x3,
    )
    .map_err(|e| internal(&e))?;
    let mut dst = fir::images::Image::new(SIDE, SIDE, fir::PixelType::U8x3);
    let (left, top, side) = staged.crop;
    let options = fir::ResizeOptions::new()
        .resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::Lanczos3))
        .crop(left, top, side, side);
    fir::Resizer::new()
        .resize(&src, &mut dst, &options)
        .map_err(|e| internal(&e))?;
    let mut square = image::DynamicImage::ImageRgb8(
        image::RgbImage::from_raw(SIDE, SIDE, dst.into_vec()).expect("SIDE x SIDE RGB"),
    );
    square.apply_orientation(staged.orientation);
    let square = square.as_rgb8().expect("still RGB");
    Ok((encode(square)?, thumbhash(square)?))
}

/// ThumbHash's side: it takes at most 100x100 (larger is slower, no
/// better).
const THUMB: u32 = 100;

/// The ThumbHash (`thumbhash`, the reference implementation's crate) of
/// the served square, base64 (standard, padded): the square box-filtered
/// to 100x100 by the same resizer, then made opaque RGBA.
fn thumbhash(square: &image::RgbImage) -> Result<String, Rejection> {
    use base64::Engine as _;
    let failed = |e: &dyn std::fmt::Display| reject(format!("the placeholder failed ({e})"));
    let src = fir::images::ImageRef::new(
        square.width(),
        square.height(),
        square.as_raw(),
        fir::PixelType::U8x3,
    )
    .map_err(|e| failed(&e))?;
    let mut small = fir::images::Image::new(THUMB, THUMB, fir::PixelType::U8x3);
    let box_filter =
        fir::ResizeOptions::new().resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::Box));
    fir::Resizer::new()
        .resize(&src, &mut small, &box_filter)
        .map_err(|e| failed(&e))?;
    let rgba: Vec<u8> = small
        .buffer()
        .chunks_exact(3)
        .flat_map(|p| [p[0], p[1], p[2], 255])
        .collect();
    let hash = thumbhash::rgba_to_thumb_hash(THUMB as usize, THUMB as usize, &rgba);
    Ok(base64::engine::general_purpose::STANDARD.encode(hash))
}

/// Baseline JPEG, 4:2:0, optimised Huffman tables; nothing but pixels is
/// written, so no EXIF, GPS or other metadata of the original survives.
fn encode(rgb: &image::RgbImage) -> Result<Vec<u8>, Rejection> {
    let mut c = mozjpeg::Compress::new(mozjpeg::ColorSpace::JCS_RGB);
    // libjpeg-turbo's defaults (baseline, standard tables, 4:2:0), not
    // mozjpeg's progressive/trellis profile: the contract says baseline.
    c.set_fastest_defaults();
    c.set_size(rgb.width() as usize, rgb.height() as usize);
    c.set_quality(f32::from(QUALITY));
    c.set_optimize_coding(true);
    c.set_chroma_sampling_pixel_sizes((2, 2), (2, 2));
    let mut c = c
        .start_compress(Vec::with_capacity(128 * 1024))
        .map_err(|e| reject(format!("encoding failed ({e})")))?;
    c.write_scanlines(rgb.as_raw())
        .map_err(|e| reject(format!("encoding failed ({e})")))?;
    c.finish()
        .map_err(|e| reject(format!("encoding failed ({e})")))
}

/// The orientation an EXIF block (TIFF header first) asks for; a broken
/// block is no reason to refuse the picture.
fn orientation_of(exif: Option<&[u8]>) -> Orientation {
    exif.and_then(Orientation::from_exif_chunk)
        .unwrap_or(Orientation::NoTransforms)
}

/// Reads and drops `n` bytes.
fn skip<R: Read>(input: &mut R, n: u64) -> std::io::Result<()> {
    let copied = std::io::copy(&mut input.take(n), &mut std::io::sink())?;
    if copied < n {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests;
