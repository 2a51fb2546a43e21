//! The conversion itself, pure: bytes of an original in, a 600x600 baseline
//! JPEG out, or a reason a person can act on.
//!
//! Order of work, cheapest refusal first: sniff the format from the magic
//! bytes; read the header; refuse dimensions or decoded sizes over the limits
//! *before* allocating (the `image` crate's `into_decoder` path does not
//! check `max_alloc` itself); decode; cut the centred square (a square crop
//! commutes with EXIF rotation, so the rotation can wait for the small
//! image); flatten alpha onto white; shrink to 600x600; rotate; encode.

use std::io::Cursor;

use image::imageops::{self, FilterType};
use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage, RgbaImage};

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
    /// Most bytes the decoded image may take.
    pub max_decoded_bytes: u64,
}

impl Default for Limits {
    /// 16000x12000 (a 192 MP camera) passes; the decompression bombs of the
    /// tests (40000x40000, 50000x50000) do not.
    fn default() -> Self {
        Limits {
            max_side: 20_000,
            max_pixels: 200_000_000,
            max_decoded_bytes: 800 * 1024 * 1024,
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
pub fn sniff(bytes: &[u8]) -> Result<image::ImageFormat, Rejection> {
    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n";
    match bytes {
        [0xFF, 0xD8, 0xFF, ..] => Ok(image::ImageFormat::Jpeg),
        b if b.starts_with(PNG) => Ok(image::ImageFormat::Png),
        [b'B', b'M', ..] => Ok(image::ImageFormat::Bmp),
        b if b.starts_with(b"GIF8") => Err(reject(
            "GIF images are not supported; upload a PNG, JPEG or BMP",
        )),
        b if b.len() >= 12 && &b[..4] == b"RIFF" && &b[8..12] == b"WEBP" => Err(reject(
            "WebP images are not supported; upload a PNG, JPEG or BMP",
        )),
        [] => Err(reject("the upload is empty")),
        _ => Err(reject("the upload is not a PNG, JPEG or BMP image")),
    }
}

pub fn convert(bytes: &[u8], limits: &Limits) -> Result<Vec<u8>, Rejection> {
    let format = sniff(bytes)?;
    let name = format_name(format);
    let corrupt =
        |e: image::ImageError| reject(format!("the {name} image is corrupt or truncated ({e})"));

    let mut decoder = ImageReader::with_format(Cursor::new(bytes), format)
        .into_decoder()
        .map_err(corrupt)?;
    let (w, h) = decoder.dimensions();
    if w == 0 || h == 0 {
        return Err(reject(format!("the {name} image has no pixels")));
    }
    if w > limits.max_side || h > limits.max_side || u64::from(w) * u64::from(h) > limits.max_pixels
    {
        return Err(reject(format!(
            "the image is {w}x{h} pixels; at most {} pixels a side and {} megapixels are accepted",
            limits.max_side,
            limits.max_pixels / 1_000_000
        )));
    }
    if decoder.total_bytes() > limits.max_decoded_bytes {
        return Err(reject(format!(
            "the image would take {} MiB decoded; at most {} MiB is accepted",
            decoder.total_bytes() >> 20,
            limits.max_decoded_bytes >> 20
        )));
    }
    // The decoders' own allocation checks, as a second line behind ours.
    let mut image_limits = image::Limits::default();
    image_limits.max_image_width = Some(limits.max_side);
    image_limits.max_image_height = Some(limits.max_side);
    image_limits.max_alloc = Some(limits.max_decoded_bytes + (64 << 20));
    decoder.set_limits(image_limits).map_err(corrupt)?;
    // A broken EXIF block is no reason to refuse the picture.
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let image = DynamicImage::from_decoder(decoder).map_err(corrupt)?;

    let side = w.min(h);
    let (x, y) = ((w - side) / 2, (h - side) / 2);
    let mut square = if image.color().has_alpha() {
        // Flatten before resampling, so transparent pixels' hidden colour
        // cannot bleed into the edges.
        let rgba = image.into_rgba8();
        DynamicImage::ImageRgb8(shrink(&flatten_onto_white(
            &imageops::crop_imm(&rgba, x, y, side, side).to_image(),
        )))
    } else {
        let rgb = image.into_rgb8();
        DynamicImage::ImageRgb8(shrink(&*imageops::crop_imm(&rgb, x, y, side, side)))
    };
    square.apply_orientation(orientation);
    encode(&square.into_rgb8())
}

/// To SIDE x SIDE: area averaging for big shrinks (fast, and exact for
/// downscaling), Catmull-Rom for the rest, upscaling included.
fn shrink<I: image::GenericImageView<Pixel = image::Rgb<u8>>>(square: &I) -> RgbImage {
    if square.width() >= 2 * SIDE {
        imageops::thumbnail(square, SIDE, SIDE)
    } else {
        imageops::resize(square, SIDE, SIDE, FilterType::CatmullRom)
    }
}

fn flatten_onto_white(rgba: &RgbaImage) -> RgbImage {
    RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0;
        let a = u16::from(a);
        let over = |c: u8| ((u16::from(c) * a + 255 * (255 - a) + 127) / 255) as u8;
        image::Rgb([over(r), over(g), over(b)])
    })
}

/// Baseline JPEG; nothing but pixels is written, so no EXIF, GPS or other
/// metadata of the original survives.
fn encode(rgb: &RgbImage) -> Result<Vec<u8>, Rejection> {
    let mut out = Vec::with_capacity(64 * 1024);
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, QUALITY)
        .encode_image(rgb)
        .map_err(|e| reject(format!("encoding failed ({e})")))?;
    Ok(out)
}

fn format_name(f: image::ImageFormat) -> &'static str {
    match f {
        image::ImageFormat::Png => "PNG",
        image::ImageFormat::Jpeg => "JPEG",
        _ => "BMP",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32, f: impl Fn(u32, u32) -> image::Rgba<u8>) -> Vec<u8> {
        let img = RgbaImage::from_fn(w, h, f);
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }

    fn decode(jpeg: &[u8]) -> RgbImage {
        assert_eq!(sniff(jpeg).unwrap(), image::ImageFormat::Jpeg);
        image::load_from_memory(jpeg).unwrap().into_rgb8()
    }

    #[test]
    fn sniffs_by_magic_bytes() {
        assert_eq!(
            sniff(b"\xFF\xD8\xFF\xE0rest").unwrap(),
            image::ImageFormat::Jpeg
        );
        assert_eq!(sniff(b"BM....").unwrap(), image::ImageFormat::Bmp);
        assert!(sniff(b"GIF89a").unwrap_err().0.contains("GIF"));
        assert!(
            sniff(b"RIFF\0\0\0\0WEBPVP8 ")
                .unwrap_err()
                .0
                .contains("WebP")
        );
        assert!(sniff(b"hello").is_err());
        assert!(sniff(b"").is_err());
    }

    #[test]
    fn output_is_600_square_and_transparency_turns_white() {
        let out = convert(
            &png(100, 80, |_, _| image::Rgba([0, 0, 0, 0])),
            &Limits::default(),
        )
        .unwrap();
        let img = decode(&out);
        assert_eq!(img.dimensions(), (600, 600));
        let p = img.get_pixel(300, 300).0;
        assert!(p.iter().all(|c| *c > 245), "{p:?}");
    }

    #[test]
    fn wide_images_are_cropped_not_stretched() {
        // 300x100: red | green | blue thirds. The centre square is all green.
        let src = png(300, 100, |x, _| match x {
            0..100 => image::Rgba([255, 0, 0, 255]),
            100..200 => image::Rgba([0, 255, 0, 255]),
            _ => image::Rgba([0, 0, 255, 255]),
        });
        let img = decode(&convert(&src, &Limits::default()).unwrap());
        for (x, y) in [(20, 20), (300, 300), (580, 580), (20, 580)] {
            let [r, g, b] = img.get_pixel(x, y).0;
            assert!(g > 200 && r < 60 && b < 60, "({x},{y}) = {:?}", [r, g, b]);
        }
    }

    #[test]
    fn limits_refuse_before_decoding() {
        let small = Limits {
            max_side: 50,
            ..Limits::default()
        };
        let e = convert(&png(60, 10, |_, _| image::Rgba([1, 2, 3, 255])), &small).unwrap_err();
        assert!(e.0.contains("60x10"), "{e}");
        let few_bytes = Limits {
            max_decoded_bytes: 100,
            ..Limits::default()
        };
        assert!(convert(&png(10, 10, |_, _| image::Rgba([1, 2, 3, 255])), &few_bytes).is_err());
    }

    #[test]
    fn truncated_images_are_refused_with_a_reason() {
        let whole = png(64, 64, |x, y| image::Rgba([x as u8, y as u8, 0, 255]));
        let e = convert(&whole[..whole.len() / 2], &Limits::default()).unwrap_err();
        assert!(e.0.contains("corrupt or truncated"), "{e}");
    }
}
