//! Test images, made here rather than committed: real encodings of known
//! pixels, and hostile files built byte by byte.

use std::io::{Cursor, Write};

use image::{ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};

pub fn encode_rgb(img: &RgbImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), format).unwrap();
    out
}

pub fn encode_rgba_png(img: &RgbaImage) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
        .unwrap();
    out
}

/// Vertical bands of the given colours, equally wide.
pub fn bands(w: u32, h: u32, colours: &[[u8; 3]]) -> RgbImage {
    RgbImage::from_fn(w, h, |x, _| {
        Rgb(colours[(x as usize * colours.len()) / w as usize])
    })
}

/// Noise compresses badly: a PNG of it spans several upload parts.
pub fn noise_png(w: u32, h: u32) -> Vec<u8> {
    let mut state: u32 = 0x9E37_79B9;
    let img = RgbImage::from_fn(w, h, |_, _| {
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        };
        Rgb([next(), next(), next()])
    });
    encode_rgb(&img, ImageFormat::Png)
}

/// `img` with per-pixel noise of +-`amplitude`: big files from simple
/// pictures whose colours still average out.
pub fn with_noise(mut img: RgbImage, amplitude: u8) -> RgbImage {
    let mut state: u32 = 0x2545_F491;
    let span = 2 * u32::from(amplitude) + 1;
    for c in img.iter_mut() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = (state % span) as i32 - i32::from(amplitude);
        *c = (i32::from(*c) + n).clamp(0, 255) as u8;
    }
    img
}

pub fn transparent_png(w: u32, h: u32) -> Vec<u8> {
    // Fully transparent black: a naive conversion shows black.
    encode_rgba_png(&RgbaImage::from_pixel(w, h, Rgba([0, 0, 0, 0])))
}

/// A JPEG carrying an EXIF block with this orientation.
pub fn jpeg_with_orientation(img: &RgbImage, orientation: u16) -> Vec<u8> {
    let jpeg = encode_rgb(img, ImageFormat::Jpeg);
    // TIFF, big-endian, one IFD entry: 0x0112 Orientation, SHORT, 1 value.
    let mut tiff = b"MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01".to_vec();
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = vec![0xFF, 0xD8, 0xFF, 0xE1];
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc = crc32fast::Hasher::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(&crc.finalize().to_be_bytes());
}

/// `img` as an Adam7-interlaced PNG (RGB, 8-bit, no filtering), written by
/// hand: the `png` crate's encoder does not interlace.
pub fn interlaced_png(img: &RgbImage) -> Vec<u8> {
    let (w, h) = img.dimensions();
    RawPng::rgb8(w, h).write(true, |x, y, out| {
        out.extend_from_slice(&img.get_pixel(x, y).0)
    })
}

/// A PNG of any colour type and depth, written by hand, interlaced (Adam7)
/// or not, from a pixel function; rows are compressed as they are made, so
/// a 200 MP file never exists raw in memory.
pub struct RawPng {
    pub width: u32,
    pub height: u32,
    /// IHDR colour type: 0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA.
    pub colour_type: u8,
    pub bit_depth: u8,
    /// PLTE and tRNS chunk bodies, for a palette.
    pub palette: Option<(Vec<u8>, Option<Vec<u8>>)>,
}

impl RawPng {
    pub fn rgb8(width: u32, height: u32) -> Self {
        RawPng {
            width,
            height,
            colour_type: 2,
            bit_depth: 8,
            palette: None,
        }
    }

    /// `pixel(x, y, out)` appends one pixel's bytes (big-endian samples).
    pub fn write(&self, interlaced: bool, pixel: impl Fn(u32, u32, &mut Vec<u8>)) -> Vec<u8> {
        self.write_rows(interlaced, |y, xs, out| {
            for x in xs {
                pixel(x, y, out);
            }
        })
    }

    /// As [`RawPng::write`], a row at a time: `row(y, xs, out)` appends the
    /// bytes of row `y`'s pixels at `xs` (a pass's columns, or all), for
    /// files too big to write a pixel at a time in a debug build.
    pub fn write_rows(
        &self,
        interlaced: bool,
        row_of: impl Fn(u32, std::iter::StepBy<std::ops::Range<u32>>, &mut Vec<u8>),
    ) -> Vec<u8> {
        let (w, h) = (self.width, self.height);
        let passes: &[(u32, u32, usize, usize)] = if interlaced {
            &[
                (0, 0, 8, 8),
                (4, 0, 8, 8),
                (0, 4, 4, 8),
                (2, 0, 4, 4),
                (0, 2, 2, 4),
                (1, 0, 2, 2),
                (0, 1, 1, 2),
            ]
        } else {
            &[(0, 0, 1, 1)]
        };
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut row = Vec::new();
        for &(x0, y0, dx, dy) in passes {
            if x0 >= w || y0 >= h {
                continue;
            }
            for y in (y0..h).step_by(dy) {
                row.clear();
                row.push(0); // filter: none
                row_of(y, (x0..w).step_by(dx), &mut row);
                z.write_all(&row).unwrap();
            }
        }
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&w.to_be_bytes());
        ihdr.extend_from_slice(&h.to_be_bytes());
        ihdr.extend_from_slice(&[self.bit_depth, self.colour_type, 0, 0, u8::from(interlaced)]);
        png_chunk(&mut out, b"IHDR", &ihdr);
        if let Some((plte, trns)) = &self.palette {
            png_chunk(&mut out, b"PLTE", plte);
            if let Some(t) = trns {
                png_chunk(&mut out, b"tRNS", t);
            }
        }
        png_chunk(&mut out, b"IDAT", &z.finish().unwrap());
        png_chunk(&mut out, b"IEND", &[]);
        out
    }
}

/// A zlib bomb: a PNG header declaring `side` x `side` RGBA with a few KiB
/// of compressed zeros that would inflate to gigabytes.
pub fn png_bomb(side: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
    png_chunk(&mut out, b"IHDR", &ihdr);
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..64 {
        z.write_all(&zeros).unwrap();
    }
    png_chunk(&mut out, b"IDAT", &z.finish().unwrap());
    png_chunk(&mut out, b"IEND", &[]);
    out
}

/// A progressive JPEG (libjpeg's simple progression: DC and AC scans with
/// successive approximation), 4:2:0.
pub fn progressive_jpeg(img: &RgbImage) -> Vec<u8> {
    let mut c = mozjpeg::Compress::new(mozjpeg::ColorSpace::JCS_RGB);
    c.set_fastest_defaults();
    c.set_size(img.width() as usize, img.height() as usize);
    c.set_quality(85.0);
    c.set_progressive_mode();
    let mut c = c.start_compress(Vec::new()).expect("libjpeg starts");
    c.write_scanlines(img.as_raw()).expect("libjpeg writes");
    c.finish().expect("libjpeg finishes")
}

/// A small real JPEG whose frame header claims `w` x `h`.
pub fn jpeg_claiming(w: u16, h: u16) -> Vec<u8> {
    let mut jpeg = encode_rgb(
        &RgbImage::from_pixel(16, 16, Rgb([9, 9, 9])),
        ImageFormat::Jpeg,
    );
    let sof = jpeg
        .windows(2)
        .position(|p| p == [0xFF, 0xC0])
        .expect("baseline SOF0");
    jpeg[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
    jpeg[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
    jpeg
}

/// Holds a post's `thumbhash` to what the contract promises: base64 of a
/// ThumbHash that decodes to a square preview whose average colour is the
/// served image's.
pub fn assert_thumbhash_of(base64_hash: &str, image: &RgbImage) {
    use base64::Engine as _;
    let hash = base64::engine::general_purpose::STANDARD
        .decode(base64_hash)
        .unwrap_or_else(|e| panic!("thumbhash {base64_hash:?} is not base64: {e}"));
    let (w, h, rgba) = thumbhash::thumb_hash_to_rgba(&hash)
        .unwrap_or_else(|()| panic!("thumbhash {base64_hash:?} does not decode"));
    assert_eq!(w, h, "a square preview");
    let mut preview = [0f64; 3];
    for p in rgba.chunks_exact(4) {
        for c in 0..3 {
            preview[c] += f64::from(p[c]) / (w * h) as f64;
        }
    }
    let mut served = [0f64; 3];
    for p in image.pixels() {
        for c in 0..3 {
            served[c] += f64::from(p[c]) / f64::from(image.width() * image.height());
        }
    }
    for c in 0..3 {
        assert!(
            (preview[c] - served[c]).abs() <= 6.0,
            "average colour: preview {preview:?}, image {served:?}"
        );
    }
}
